package redisstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/redis/go-redis/v9"
)

func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newState(t testing.TB, c redis.UniversalClient, opts ...Option) *State {
	t.Helper()
	// A generous timeout where the bound is not under test: the machine's
	// two cores are shared, and -race slows every call.
	opts = append([]Option{WithNamespace(t.Name()), WithTimeout(time.Second)}, opts...)
	s := New(c, opts...)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var dumpOnFailure func(testing.TB)

// holds collects what a subscription delivers.
type holds struct{ ch chan llmtransport.Hold }

func subscribe(t testing.TB, s *State) *holds {
	t.Helper()
	h := &holds{ch: make(chan llmtransport.Hold, 1024)}
	stop := s.Subscribe(func(x llmtransport.Hold) { h.ch <- x })
	t.Cleanup(stop)
	return h
}

// wait returns the first hold for which match is true, within d.
func (h *holds) wait(t testing.TB, d time.Duration, match func(llmtransport.Hold) bool) llmtransport.Hold {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case x := <-h.ch:
			if match(x) {
				return x
			}
		case <-timer.C:
			if dumpOnFailure != nil {
				dumpOnFailure(t)
			}
			t.Fatalf("no matching hold within %v", d)
			return llmtransport.Hold{}
		}
	}
}

// none fails t if a hold matching match arrives within d.
func (h *holds) none(t testing.TB, d time.Duration, match func(llmtransport.Hold) bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case x := <-h.ch:
			if match(x) {
				t.Fatalf("unexpected hold %+v", x)
			}
		case <-timer.C:
			return
		}
	}
}

func is(kind llmtransport.HoldKind, model string) func(llmtransport.Hold) bool {
	return func(h llmtransport.Hold) bool { return h.Kind == kind && h.Model == model }
}

// subscribed waits until s's watcher has subscribed (a message published
// from now on reaches it), by publishing probes on a model of its own.
func subscribed(t testing.TB, s *State, h *holds) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.Publish(llmtransport.Hold{Kind: llmtransport.HoldRelease, Host: "sync", Model: "sync"})
		timer := time.NewTimer(50 * time.Millisecond)
		select {
		case x := <-h.ch:
			timer.Stop()
			if x.Host == "sync" {
				return
			}
			h.ch <- x
		case <-timer.C:
		}
	}
	t.Fatal("the subscription never became live")
}

func TestPublishReachesAnotherState(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	a := newState(t, newClient(t, addr))
	b := newState(t, newClient(t, addr))
	got := subscribe(t, b)
	subscribed(t, b, got)

	cred := a.Fingerprint("sk-test-key")
	if cred != b.Fingerprint("sk-test-key") {
		t.Fatal("two States of one namespace disagree on a fingerprint")
	}
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "api.example.com", Model: "gpt-4o",
		Credential: cred, TTL: 1500 * time.Millisecond, Reason: "rate_limited"})
	h := got.wait(t, 5*time.Second, is(llmtransport.HoldCooldown, "gpt-4o"))
	if h.Host != "api.example.com" || h.Credential != cred || h.Reason != "rate_limited" {
		t.Fatalf("received %+v", h)
	}
	if h.TTL <= 1000*time.Millisecond || h.TTL > 1500*time.Millisecond {
		t.Fatalf("TTL %v, want within (1s, 1.5s]", h.TTL)
	}

	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "api.example.com", Model: "dead|model:%x",
		TTL: 30 * time.Second, Reason: "model_not_found"})
	h = got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "dead|model:%x"))
	if h.Reason != "model_not_found" || h.Credential != 0 || h.TTL <= 29*time.Second {
		t.Fatalf("received %+v", h)
	}
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldRelease, Host: "api.example.com", Model: "dead|model:%x"})
	h = got.wait(t, 5*time.Second, is(llmtransport.HoldRelease, "dead|model:%x"))
	if h.TTL != 0 {
		t.Fatalf("release with TTL %v", h.TTL)
	}
	// The release deleted the open hold: a new subscriber backfills nothing.
	c := newState(t, newClient(t, addr))
	got2 := subscribe(t, c)
	subscribed(t, c, got2)
	got2.none(t, 100*time.Millisecond, is(llmtransport.HoldOpen, "dead|model:%x"))
}

func TestExtendOnly(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	rc := newClient(t, addr)
	a := newState(t, newClient(t, addr))
	got := subscribe(t, a)
	subscribed(t, a, got)
	key := a.keys.holdKey(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m"})

	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: 10 * time.Second, Reason: "overloaded"})
	got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "m"))

	// A shorter hold is kept out: the TTL stays, nothing is published.
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: time.Second, Reason: "short"})
	// A hold on another model, published after it, proves the short one was handled.
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "marker", TTL: time.Second})
	got.wait(t, 5*time.Second, func(h llmtransport.Hold) bool {
		if h.Model == "m" {
			t.Fatalf("the shorter hold was published: %+v", h)
		}
		return h.Model == "marker"
	})
	pttl := rc.PTTL(context.Background(), key).Val()
	if pttl <= 9*time.Second {
		t.Fatalf("PTTL %v after a shorter hold, want > 9s", pttl)
	}
	if v := rc.Get(context.Background(), key).Val(); !strings.Contains(v, "overloaded") {
		t.Fatalf("value %q: the shorter hold replaced the longer", v)
	}

	// A longer hold extends.
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: 60 * time.Second, Reason: "long"})
	h := got.wait(t, 5*time.Second, is(llmtransport.HoldOpen, "m"))
	if h.TTL <= 59*time.Second || h.Reason != "long" {
		t.Fatalf("received %+v", h)
	}
	if pttl := rc.PTTL(context.Background(), key).Val(); pttl <= 59*time.Second {
		t.Fatalf("PTTL %v after a longer hold", pttl)
	}
}

func TestBackfillAtStart(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	a := newState(t, newClient(t, addr))
	sync := subscribe(t, a)
	subscribed(t, a, sync)
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "h", Model: "m", Credential: a.Fingerprint("k"),
		TTL: 20 * time.Second, Reason: "rate_limited"})
	sync.wait(t, 5*time.Second, is(llmtransport.HoldCooldown, "m")) // it is in Redis

	b := newState(t, newClient(t, addr))
	got := subscribe(t, b)
	h := got.wait(t, 5*time.Second, is(llmtransport.HoldCooldown, "m"))
	if h.TTL <= 15*time.Second || h.TTL > 20*time.Second || h.Credential != a.Fingerprint("k") {
		t.Fatalf("backfilled %+v", h)
	}
}

func TestNamespacesAreSeparate(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	a := New(newClient(t, addr), WithNamespace(t.Name()+"-a"))
	defer a.Close()
	b := New(newClient(t, addr), WithNamespace(t.Name()+"-b"))
	defer b.Close()
	got := subscribe(t, b)
	subscribed(t, b, got)
	if a.Fingerprint("k") == b.Fingerprint("k") {
		t.Fatal("the default fingerprint key is not salted by the namespace")
	}
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: 10 * time.Second})
	b.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "marker", TTL: 10 * time.Second})
	got.wait(t, 5*time.Second, func(h llmtransport.Hold) bool {
		if h.Model == "m" {
			t.Fatal("a hold crossed namespaces")
		}
		return h.Model == "marker"
	})
}

func TestLeaseExclusive(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	const n = 8
	states := make([]*State, n)
	for i := range states {
		states[i] = newState(t, newClient(t, addr), WithTimeout(time.Second))
	}
	var wg sync.WaitGroup
	granted := make([]bool, n)
	held := make([]time.Duration, n)
	for i, s := range states {
		wg.Go(func() { granted[i], held[i] = s.Lease(context.Background(), "h", "m", 5*time.Second) })
	}
	wg.Wait()
	winners := 0
	for i := range states {
		if granted[i] {
			winners++
			continue
		}
		if held[i] <= 4*time.Second || held[i] > 5*time.Second {
			t.Errorf("state %d: held %v, want within (4s, 5s]", i, held[i])
		}
	}
	if winners != 1 {
		t.Fatalf("%d processes granted the lease, want 1", winners)
	}
	// Another circuit has its own lease.
	if ok, _ := states[0].Lease(context.Background(), "h", "other", time.Second); !ok {
		t.Fatal("the lease of another model was refused")
	}
	// The holder asking again (its probe said nothing: the next call asks
	// for the lease) gets it, as the fleet's hold expects; the others are
	// still refused.
	for i, s := range states {
		if !granted[i] {
			continue
		}
		if ok, d := s.Lease(context.Background(), "h", "m", 5*time.Second); !ok {
			t.Fatalf("the holder asking again was refused for %v", d)
		}
		if ok, _ := states[(i+1)%n].Lease(context.Background(), "h", "m", 5*time.Second); ok {
			t.Fatal("another process was granted the lease its holder renewed")
		}
	}
	// A release ends the lease with the open hold.
	sub := subscribe(t, states[1])
	subscribed(t, states[1], sub)
	states[1].Publish(llmtransport.Hold{Kind: llmtransport.HoldRelease, Host: "h", Model: "m"})
	sub.wait(t, 5*time.Second, is(llmtransport.HoldRelease, "m"))
	if ok, _ := states[2].Lease(context.Background(), "h", "m", time.Second); !ok {
		t.Fatal("the lease still held after a release")
	}
}

func TestNoSecretInRedis(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	const secret = "sk-proj-LIVESECRETabcdefghijklmnopqrstuvwxyz0123456789"
	rc := newClient(t, addr)
	// Every message of every channel, raw.
	ps := rc.PSubscribe(context.Background(), "*")
	defer ps.Close()
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var messages []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel() {
			mu.Lock()
			messages = append(messages, m.Channel+" "+m.Payload)
			mu.Unlock()
		}
	}()

	a := newState(t, newClient(t, addr), WithSecret([]byte("fleet secret")))
	got := subscribe(t, a)
	subscribed(t, a, got)
	a.Publish(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "h", Model: "m",
		Credential: a.Fingerprint(secret), TTL: 30 * time.Second, Reason: "rate_limited"})
	got.wait(t, 5*time.Second, is(llmtransport.HoldCooldown, "m"))
	a.Lease(context.Background(), "h", "m", 30*time.Second)

	plain := sha256.Sum256([]byte(secret))
	forbidden := []string{secret, secret[8:24], hex.EncodeToString(plain[:]), hex.EncodeToString(plain[:8])}
	var seen []string
	var cursor uint64
	for {
		ks, next, err := rc.Scan(context.Background(), cursor, "*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			seen = append(seen, k)
			switch rc.Type(context.Background(), k).Val() {
			case "string":
				seen = append(seen, rc.Get(context.Background(), k).Val())
			case "zset":
				seen = append(seen, rc.ZRange(context.Background(), k, 0, -1).Val()...)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	_ = ps.Close()
	<-done
	seen = append(seen, messages...)
	if len(messages) == 0 {
		t.Fatal("no message captured")
	}
	for _, s := range seen {
		for _, f := range forbidden {
			if strings.Contains(strings.ToLower(s), strings.ToLower(f)) {
				t.Fatalf("%q contains %q", s, f)
			}
		}
	}
	want := credHex(a.Fingerprint(secret))
	found := false
	for _, s := range seen {
		found = found || strings.Contains(s, want)
	}
	if !found {
		t.Fatal("the keyed fingerprint is nowhere: the scan saw nothing")
	}
}

func TestKeysShareOneSlot(t *testing.T) {
	for _, ns := range []string{"default", "prod:openai", "a{b}c", "é"} {
		k := newKeys(ns)
		s := New(nil, WithNamespace(ns))
		all := []string{k.index, k.epoch, k.channel, k.leaseKey("h:1", "m{x}"),
			s.keys.holdKey(llmtransport.Hold{Kind: llmtransport.HoldCooldown, Host: "h", Model: strings.Repeat("m", 500)}),
			s.keys.holdKey(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "}{"}),
			k.limitKey("h{", strings.Repeat("m", 500), 1<<63)}
		tag := hashTag(all[0])
		for _, key := range all {
			if hashTag(key) != tag || tag == "" {
				t.Errorf("namespace %q: key %q has hash tag %q, want %q", ns, key, hashTag(key), tag)
			}
			if len(key) > 300 {
				t.Errorf("key of %d bytes", len(key))
			}
		}
	}
}

// hashTag is Redis Cluster's: between the first '{' and the next '}'.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return ""
	}
	return key[i+1 : i+1+j]
}

func TestFingerprint(t *testing.T) {
	a := New(nil, WithSecret([]byte("s1")))
	b := New(nil, WithSecret([]byte("s1")), WithNamespace("other"))
	c := New(nil, WithSecret([]byte("s2")))
	if a.Fingerprint("") != 0 {
		t.Fatal("an empty credential has a fingerprint")
	}
	if a.Fingerprint("k") != b.Fingerprint("k") {
		t.Fatal("one secret, two fingerprints")
	}
	if a.Fingerprint("k") == c.Fingerprint("k") || a.Fingerprint("k") == a.Fingerprint("k2") {
		t.Fatal("fingerprints collide")
	}
	// sync.Pool drops items at random under the race detector.
	if n := testing.AllocsPerRun(100, func() { a.Fingerprint("sk-123") }); n > 0 && !raceEnabled {
		t.Errorf("Fingerprint allocates %v times", n)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, h := range []llmtransport.Hold{
		{Kind: llmtransport.HoldCooldown, Host: "h:443", Model: "a|b%c", Credential: 1<<64 - 1, TTL: 1500 * time.Millisecond, Reason: "rate_limited"},
		{Kind: llmtransport.HoldOpen, Host: "h", Model: "", TTL: time.Hour, Reason: "r|%"},
		{Kind: llmtransport.HoldRelease, Host: "h", Model: "m"},
	} {
		got, err := decodeValue(encodeValue(h), h.TTL)
		if err != nil || got != h {
			t.Errorf("round trip of %+v: %+v, %v", h, got, err)
		}
		msg := messageHead(time.UnixMicro(123)) + "1500|" + encodeValue(h)
		if _, sent, err := decodeMessage(msg); err != nil || sent.UnixMicro() != 123 {
			t.Errorf("message %q: %v", msg, err)
		}
	}
	for _, bad := range []string{"", "llmt1|1|2", "llmt1|x|1|open|0000000000000000||h|m", "llmt1|1|1|nope|0000000000000000||h|m",
		"llmt1|1|1|open|00|r|h|m", "llmt1|1|0|open|0000000000000000|r|h|m", "llmt1|1|1|open|0000000000000000|%|h|m"} {
		if _, _, err := decodeMessage(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestPublishInvalidAndClosed(t *testing.T) {
	leakCheck(t)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	s := New(c)
	s.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m"}) // no TTL: invalid
	s.Publish(llmtransport.Hold{Host: "h"})                                          // no kind
	_ = s.Close()
	_ = s.Close()
	s.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: time.Second})
	stop := s.Subscribe(func(llmtransport.Hold) { t.Error("delivered after Close") })
	stop()
	stop()
}

// TestSilentServer: a server that accepts connections and never answers.
// Lease grants within the timeout, Publish never blocks, stop and Close
// return, with the client's default options.
func TestSilentServer(t *testing.T) {
	leakCheck(t)
	addr := silentServer(t)

	c := redis.NewClient(&redis.Options{Addr: addr}) // go-redis defaults: 3 s reads
	defer c.Close()
	s := New(c, WithTimeout(20*time.Millisecond))
	stop := s.Subscribe(func(llmtransport.Hold) {})

	var leases, publishes []time.Duration
	for range 5 {
		start := time.Now()
		ok, _ := s.Lease(context.Background(), "h", "m", time.Second)
		leases = append(leases, time.Since(start))
		if !ok {
			t.Fatal("a silent server refused the lease")
		}
	}
	bounded(t, "Lease", leases, 20*time.Millisecond+slack())
	for range 10000 {
		start := time.Now()
		s.Publish(llmtransport.Hold{Kind: llmtransport.HoldOpen, Host: "h", Model: "m", TTL: time.Second})
		publishes = append(publishes, time.Since(start))
	}
	bounded(t, "Publish", publishes, slack())
	start := time.Now()
	stop()
	bounded(t, "stop", []time.Duration{time.Since(start)}, 20*time.Millisecond+slack())
	// Close waits for the calls abandoned at the timeout: they end by the
	// client's own read timeout (3 s by default).
	start = time.Now()
	_ = s.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// slack is the scheduling delay tolerated on top of a bound: the machine's
// two cores are shared, and -race slows everything.
func slack() time.Duration {
	if raceEnabled {
		return 300 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// bounded fails t unless the median of ds is within limit and none
// reaches 2.5 s (go-redis alone waits 1.7 s on a refusing server, 3-5 s
// on a silent one: calls that waited for Redis would show in the median;
// the worst case only rules out a hang, the machine being shared).
func bounded(t *testing.T, what string, ds []time.Duration, limit time.Duration) {
	t.Helper()
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	if med, worst := sorted[len(sorted)/2], sorted[len(sorted)-1]; med > limit || worst >= 2500*time.Millisecond {
		t.Fatalf("%s: median %v (limit %v), worst %v (limit 2.5s)", what, med, limit, worst)
	}
}
