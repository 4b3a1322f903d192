package redisstate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// replicaEnv, when set, makes this test binary replica B of
// TestFleetProcesses: "namespace gatewayURL".
const replicaEnv = "LLMTRANSPORT_FLEET_REPLICA_B"

// replicaReport is what replica B's process says it did, on a "RESULT "
// line of its stdout.
type replicaReport struct {
	HoldTTL   time.Duration   // of the cooldown it received
	Held      []int           // statuses of its requests for the held model and key
	HeldTook  []time.Duration // and how long each took
	Other     int             // status of its request for another model
	OtherTook time.Duration
	Dead      string // the error of its request for the dead model
	DeadTook  time.Duration
}

// TestFleetProcesses: replica B is another OS process (this test binary
// re-executed), with its own State and Transport, on the same Redis and
// gateway. A's 429 with retry-after-ms 1500 makes B's process send 0
// requests for that model and key until the hold ends, while its request
// for another model goes at once; A's open circuit cuts B's process off
// the dead model.
func TestFleetProcesses(t *testing.T) {
	leakCheck(t)
	addr := needRedis(t)
	gw := llmtransporttest.NewServer(
		llmtransporttest.WithModel("gpt-4o", script429(1500*time.Millisecond)),
		llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault { return llmtransporttest.Overloaded() }),
	)
	t.Cleanup(gw.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	a := newReplica(t, "A", gw.URL, addr, t.Name(), nil, llmtransport.WithMaxRetries(0))
	live(t, a)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFleetProcessReplicaB$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REDIS_ADDR="+addr, replicaEnv+"="+t.Name()+" "+gw.URL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	var readers sync.WaitGroup
	readers.Go(func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	})
	defer func() {
		err := cmd.Wait()
		readers.Wait()
		if err != nil {
			t.Errorf("replica B: %v\n%s", err, stderr.String())
		}
	}()
	expect := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("replica B ended before %q: %s", prefix, stderr.String())
				}
				t.Logf("B: %s", l)
				if rest, ok := strings.CutPrefix(l, prefix); ok {
					return rest
				}
			case <-ctx.Done():
				t.Fatalf("no %q from replica B: %s", prefix, stderr.String())
			}
		}
	}
	expect("READY")

	if st, _, err := a.call(ctx, "gpt-4o", "key-A"); st != 429 || err != nil {
		t.Fatalf("A: %d %v, want 429", st, err)
	}
	limitedAt := sent(gw, "A", "gpt-4o", "key-A")[0].Time
	for range llmtransport.DefaultBreakerMinFailures {
		_, _, _ = a.call(ctx, "dead", "k")
	}
	if c, ok := a.circuit("dead"); !ok || c.State != llmtransport.CircuitOpen {
		t.Fatalf("A's circuit of dead: %+v", c)
	}
	var rep replicaReport
	if err := json.Unmarshal([]byte(expect("RESULT ")), &rep); err != nil {
		t.Fatal(err)
	}
	held := sent(gw, "B", "gpt-4o", "key-A")
	if len(held) != len(rep.Held) || len(held) == 0 {
		t.Fatalf("B's process sent %d requests for the held model and key, reports %d", len(held), len(rep.Held))
	}
	for i, r := range held {
		if d := r.Time.Sub(limitedAt); d < 1500*time.Millisecond {
			t.Errorf("B's request reached the gateway %v after A's 429, inside the 1.5 s hold", d)
		}
		if rep.Held[i] != 200 {
			t.Errorf("B's held request: %d", rep.Held[i])
		}
	}
	other := sent(gw, "B", "gpt-4o-mini", "key-A")
	if len(other) != 1 || other[0].Time.Sub(limitedAt) >= 1500*time.Millisecond || rep.Other != 200 {
		t.Errorf("B's request for another model: %d sent, %d, after %v; want 200 during the hold", len(other), rep.Other, rep.OtherTook)
	}
	if n := len(sent(gw, "B", "dead", "")); n != 0 || !strings.Contains(rep.Dead, "circuit") {
		t.Errorf("B's process sent %d requests to dead, and got %q; want none and the open circuit", n, rep.Dead)
	}
}

// TestFleetProcessReplicaB is replica B of TestFleetProcesses, run in a
// process of its own; it is skipped otherwise. It says READY once its
// subscription is live, waits for A's cooldown, sends three requests for
// the held model and key and one for another model, waits for A's open
// circuit, tries the dead model, and says what it did on a RESULT line.
func TestFleetProcessReplicaB(t *testing.T) {
	env := os.Getenv(replicaEnv)
	if env == "" {
		t.Skip("run by TestFleetProcesses")
	}
	leakCheck(t)
	ns, url, _ := strings.Cut(env, " ")
	addr := needRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := newReplica(t, "B", url, addr, ns, nil, llmtransport.WithMaxRetries(0))
	live(t, b)
	fmt.Println("READY")

	var rep replicaReport
	h := awaitHold(t, b, 20*time.Second, is(llmtransport.HoldCooldown, "gpt-4o"))
	rep.HoldTTL = h.TTL
	rep.Other, rep.OtherTook, _ = b.call(ctx, "gpt-4o-mini", "key-A")
	rep.Held = make([]int, 3)
	rep.HeldTook = make([]time.Duration, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { rep.Held[i], rep.HeldTook[i], _ = b.call(ctx, "gpt-4o", "key-A") })
	}
	wg.Wait()
	pollUntil(t, 20*time.Second, time.Millisecond, "the fleet's hold on dead", func() bool { return b.fleetHeld("dead") })
	var err error
	_, rep.DeadTook, err = b.call(ctx, "dead", "k")
	if !errors.Is(err, llmtransport.ErrCircuitOpen) {
		t.Errorf("dead: %v", err)
	}
	rep.Dead = fmt.Sprint(err)
	out, _ := json.Marshal(rep)
	fmt.Println("RESULT " + string(out))
}
