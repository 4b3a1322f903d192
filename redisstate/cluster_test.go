package redisstate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/redis/go-redis/v9"
)

// TestClusterClient runs the State on a redis.ClusterClient against a real
// one-node Redis Cluster (every slot on one server): the scripts' keys
// must share a slot (a cross-slot script is refused even on one node), and
// pub/sub must work through the cluster client.
func TestClusterClient(t *testing.T) {
	leakCheck(t)
	needBinary(t)
	srv, err := startServer(freePort(), "--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(t.TempDir(), "nodes.conf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	admin := newClient(t, srv.addr)
	ctx := context.Background()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(admin.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster never became ok")
		}
		time.Sleep(20 * time.Millisecond) // bounded polling of the cluster's state
	}

	newCluster := func() *redis.ClusterClient {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.addr}})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a := newState(t, newCluster())
	b := newState(t, newCluster())
	got := subscribe(t, b)
	subscribed(t, b, got)

	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "h", Model: "m", Credential: a.Fingerprint("k"),
		TTL: 10 * time.Second, Reason: "rate_limited"})
	got.wait(t, 5*time.Second, is(llmtransport.HoldCooldown, "m"))
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: 10 * time.Second})
	got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "m"))
	if ok, _ := a.Lease(ctx, "h", "m", 5*time.Second); !ok {
		t.Fatal("first lease refused")
	}
	if ok, held := b.Lease(ctx, "h", "m", 5*time.Second); ok || held <= 4*time.Second {
		t.Fatalf("second lease: granted=%v held=%v", ok, held)
	}
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldRelease, Host: "h", Model: "m"})
	got.wait(t, 5*time.Second, is(llmtransport.HoldRelease, "m"))

	// A new replica backfills the cooldown through the cluster client.
	c := newState(t, newCluster())
	got3 := subscribe(t, c)
	got3.wait(t, 5*time.Second, is(llmtransport.HoldCooldown, "m"))

	// No script failed (a cross-slot script would have).
	if n := admin.Get(ctx, a.keys.epoch).Val(); n == "" {
		t.Fatal("no epoch token: the publish script never ran")
	}

	// The limiter's script through the cluster client: a denial proves it
	// ran (a failure would admit, failing open).
	l := newState(t, newCluster(), WithLimiter())
	r := twoPer10s("m")
	for range 2 {
		if w := l.Reserve(ctx, r); w != 0 {
			t.Fatalf("reserve of 2 per 10 s: wait %v", w)
		}
	}
	if w := l.Reserve(ctx, r); w <= 0 {
		t.Fatal("the third reserve of 2 per 10 s was admitted: the limiter's script did not run")
	}
}
