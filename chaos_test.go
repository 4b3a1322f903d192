package llmtransport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// The chaos test: concurrent callers on several models against the fake
// gateway, which answers with a seeded random mix of every fault it knows.
// Each call is then checked against what the server logged for it (its
// attempts are found by the X-Chaos-Call header each call carries):
//
//   - it ended with a success, the real last response (status, request ID
//     and body of the last attempt that got a response, whatever transport
//     errors came after it), or, when no attempt got one, a typed error
//     (the base transport's own error of the last attempt, an open circuit,
//     or the deadline of a call that had a short one), within the time the
//     policy implies;
//   - what the caller read is byte for byte what the server sent for that
//     attempt (a prefix of it, and a typed read error, only when the server
//     broke the body on purpose or a timeout cut it);
//   - a handed-back error response carries X-Should-Retry: false;
//   - every attempt carried the call's request body, byte for byte;
//   - no call made more than 1 + max retries attempts, an answer the policy
//     never retries (a hint above the wait cap, insufficient_quota) was
//     always a call's last, and the retries of calls that did not succeed
//     fit in the retry budget;
//   - the caller's request was not modified and its body was closed;
//   - afterwards no goroutine is left and every connection the client
//     opened is closed once idle connections are.

// The retry policy under test: short waits keep the test fast, and every
// bound below is derived from these values.
const (
	chaosMaxRetries   = 3
	chaosMaxRetryWait = 80 * time.Millisecond // hints above it are not waited for
	chaosBackoffBase  = 2 * time.Millisecond
	chaosBackoffMax   = 20 * time.Millisecond
	chaosFirstByte    = 200 * time.Millisecond // per attempt
	chaosBudgetRatio  = 0.1
	chaosBudgetBurst  = 30
	chaosHintWait     = 25 * time.Millisecond // the hints that are honoured
	chaosHeaderLimit  = 32 << 10              // the base transport's MaxResponseHeaderBytes

	// chaosSlack is added to every time bound for scheduling under the race
	// detector on a loaded machine: calls ended about 0.3 s inside their
	// bound without slack even with four -race runs at once on two cores.
	// It is a failure detector, not a timing assertion: a call that ends
	// late by more than this broke the policy.
	chaosSlack = time.Second
	// chaosHardStop is the deadline of calls without a short one of their
	// own: reaching it means the bound was broken, and it keeps a hang from
	// stalling the test.
	chaosHardStop = 20 * time.Second
	// chaosTimeCap stops starting new calls, should the machine be so slow
	// that the test would otherwise run for minutes.
	chaosTimeCap = 40 * time.Second

	chaosHeader = "X-Chaos-Call"
	// chaosAttemptHeader numbers the attempts of a call (chaosBase sets it).
	chaosAttemptHeader = "X-Chaos-Attempt"
)

// chaosBound is the longest a call that made k attempts may take under the
// policy, without slack. Before each attempt it may wait out its model's
// cooldown (at most the wait cap); each attempt waits for its first byte
// (at most the first-byte timeout); each retry waits at most a hint within
// the cap lengthened by 20 %, or the backoff cap. One more cooldown and
// retry wait are allowed for a retry that the circuit then refused.
func chaosBound(k int) time.Duration {
	perRetry := max(chaosBackoffMax, chaosMaxRetryWait+chaosMaxRetryWait/5+1)
	return time.Duration(k+1)*(chaosMaxRetryWait+perRetry) + time.Duration(k)*chaosFirstByte
}

// chaosFaults is every fault the gateway injects. Their names are distinct,
// so that the test can check that each one was served.
func chaosFaults() []llmtransporttest.Fault {
	lt := llmtransporttest.RateLimited
	return []llmtransporttest.Fault{
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
		llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel for this model"),
		llmtransporttest.OpenAIError(500, "server_error", "", "The server had an error while processing your request."),
		lt(llmtransporttest.NoHint, 0),
		lt(llmtransporttest.RetryAfterSeconds, time.Second), // above the wait cap: back at once
		lt(llmtransporttest.RetryAfterDate, time.Second),    // likewise
		lt(llmtransporttest.RetryAfterMs, chaosHintWait),
		lt(llmtransporttest.ResetTokens, chaosHintWait),
		lt(llmtransporttest.BodyRetryDelay, chaosHintWait),
		lt(llmtransporttest.MessageText, chaosHintWait),
		llmtransporttest.InsufficientQuota(), // a 429 not to retry
		llmtransporttest.Overloaded(),        // 529
		llmtransporttest.BadGatewayHTML(),
		llmtransporttest.ResetBeforeHeaders(),
		llmtransporttest.ResetAfterHeaders(),
		llmtransporttest.Delay(time.Minute, llmtransporttest.OK()),                 // slow headers: cut by the first-byte timeout
		llmtransporttest.Delay(10*time.Millisecond, llmtransporttest.Overloaded()), // slow, but in time
		llmtransporttest.TruncatedBody(),                                           // JSON cut in half, or a stream cut after its first event
		llmtransporttest.MidStreamError(2),                                         // an error event after two chunks
		llmtransporttest.ErrorFirstStream(),
		llmtransporttest.GarbageHeaders(200, 8<<10),
		llmtransporttest.GarbageHeaders(503, 0),
		llmtransporttest.GarbageHeaders(429, chaosHeaderLimit+8<<10), // over the header limit: a transport error
	}
}

// brokenBody reports whether the fault named fault breaks its answer off on
// purpose, so that what the caller reads of it may end in a read error.
// MidStreamError answers a request without "stream" like TruncatedBody.
func brokenBody(fault string, stream bool) bool {
	switch fault {
	case "reset_after_headers", "truncated_body":
		return true
	case "mid_stream_error":
		return !stream
	}
	return false
}

// finalFaults are the answers the policy never retries: a hint above the
// wait cap goes back at once, and so does a 429 for an account out of
// credit. Such an answer can only be a call's last attempt.
var finalFaults = map[string]string{
	"rate_limited:retry-after":      "a wait hint above the cap",
	"rate_limited:retry-after-date": "a wait hint above the cap",
	"insufficient_quota":            "insufficient_quota",
}

// chaosModels are the models called, each with its fault rate.
var chaosModels = []struct {
	name string
	rate float64
}{
	{"chaos-a", 0.25},
	{"chaos-b", 0.4},
	{"chaos-c", 0.55},
	{"chaos-d", 0.7},
}

// chaosCall is one call: what was asked and what came back.
type chaosCall struct {
	id       int
	model    string
	stream   bool
	getBody  bool          // the request has GetBody; else the transport buffers it
	deadline time.Duration // a short deadline of the call's own, or 0
	body     []byte
	reqBody  *trackBody

	header       http.Header // the request's headers before the call
	headerAfter  http.Header
	err          error
	status       int
	shouldRetry  []string // X-Should-Retry values
	requestID    string
	got          []byte
	readErr      error
	roundTrip    time.Duration // until RoundTrip returned
	elapsed      time.Duration // until the body was read and closed
	hardStopped  bool          // the hard-stop deadline expired
	shortExpired bool          // the short deadline expired
	cancel       context.CancelFunc
}

func (c *chaosCall) String() string {
	kind := "plain"
	if c.stream {
		kind = "stream"
	}
	body := "GetBody"
	if !c.getBody {
		body = "buffered body"
	}
	dl := "no deadline"
	if c.deadline > 0 {
		dl = "deadline " + c.deadline.String()
	}
	return fmt.Sprintf("call %d (%s, %s, %s, %s)", c.id, c.model, kind, body, dl)
}

// chaosBase is the base transport: an http.Transport whose connections are
// counted, wrapped to record each attempt's error per call.
type chaosBase struct {
	rt *http.Transport

	mu       sync.Mutex
	attempts map[string][]error         // per X-Chaos-Call, each attempt's error (nil for a response)
	ctxs     map[string]context.Context // per request ID of a response, its attempt's context
}

func (b *chaosBase) RoundTrip(req *http.Request) (*http.Response, error) {
	// Each attempt is numbered on the wire, so that the server's log can be
	// put in attempt order: an attempt the transport gave up on (its
	// first-byte timer) may reach the server after the retry that
	// followed it. The request is the transport's own copy; it is cloned,
	// not changed.
	id := req.Header.Get(chaosHeader)
	b.mu.Lock()
	n := len(b.attempts[id])
	b.attempts[id] = append(b.attempts[id], nil)
	b.mu.Unlock()
	req = req.Clone(req.Context())
	req.Header.Set(chaosAttemptHeader, strconv.Itoa(n))
	resp, err := b.rt.RoundTrip(req)
	b.mu.Lock()
	b.attempts[id][n] = err
	if resp != nil {
		if b.ctxs == nil {
			b.ctxs = map[string]context.Context{}
		}
		b.ctxs[resp.Header.Get("X-Request-Id")] = req.Context()
	}
	b.mu.Unlock()
	return resp, err
}

// timedOut reports whether the response with request ID id came as its
// attempt's first-byte timer fired: the timer and the headers raced (on a
// loaded machine, the timer can fire after RoundTrip returned and before
// the transport stopped it), and the transport took the attempt for a
// timeout. Read once the call is over, the attempt's context says which
// won.
func (b *chaosBase) timedOut(id string) bool {
	b.mu.Lock()
	ctx := b.ctxs[id]
	b.mu.Unlock()
	return ctx != nil && errors.Is(context.Cause(ctx), errFirstByteTimeout)
}

func (b *chaosBase) CloseIdleConnections() { b.rt.CloseIdleConnections() }

// trackedConn reports its first Close to a connTracker.
type trackedConn struct {
	net.Conn
	once sync.Once
	ct   *connTracker
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.ct.hook(c.Conn, http.StateClosed) })
	return err
}

// TestChaos runs the chaos twice: without the circuit breaker, where every
// fault must be served, and with the default breaker, whose open circuits
// may stop most calls early.
func TestChaos(t *testing.T) {
	t.Run("breaker=off", func(t *testing.T) { runChaos(t, 4000, 24, 1, false) })
	t.Run("breaker=on", func(t *testing.T) { runChaos(t, 1000, 24, 2, true) })
}

func runChaos(t *testing.T, calls, workers int, seed uint64, breaker bool) {
	checkLeaks(t)
	faults := chaosFaults()
	opts := []llmtransporttest.Option{llmtransporttest.WithReply("The quick brown fox jumps over the lazy dog.")}
	for i, m := range chaosModels {
		opts = append(opts, llmtransporttest.WithModel(m.name, llmtransporttest.Random(m.rate, seed*100+uint64(i), faults...)))
	}
	gw := llmtransporttest.NewServer(opts...)
	t.Cleanup(gw.Close)

	ct := newConnTracker()
	dialer := &net.Dialer{}
	base := &chaosBase{attempts: map[string][]error{}, rt: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			ct.hook(c, http.StateNew)
			return &trackedConn{Conn: c, ct: ct}, nil
		},
		MaxIdleConnsPerHost:    workers,
		MaxResponseHeaderBytes: chaosHeaderLimit,
	}}
	t.Cleanup(base.rt.CloseIdleConnections)
	topts := []Option{
		WithMaxRetries(chaosMaxRetries),
		WithMaxRetryWait(chaosMaxRetryWait),
		WithBackoff(chaosBackoffBase, chaosBackoffMax),
		WithFirstByteTimeout(chaosFirstByte),
		WithRetryBudget(chaosBudgetRatio, chaosBudgetBurst),
	}
	if !breaker {
		topts = append(topts, WithoutCircuitBreaker())
	} else {
		// Short open periods, so that circuits go half-open and close
		// again many times during the run.
		topts = append(topts, WithBreakerOpenTimeout(50*time.Millisecond))
	}
	tr := New(base, topts...)

	results := make([]*chaosCall, calls)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= calls || time.Since(start) > chaosTimeCap {
					return
				}
				results[i] = chaosDo(t, tr, gw.URL, seed, i)
			}
		})
	}
	cancelAll := func() {
		for _, c := range results {
			if c != nil && c.cancel != nil {
				c.cancel()
			}
		}
	}
	t.Cleanup(cancelAll)
	wg.Wait()
	took := time.Since(start)

	// Every connection the client opened gets closed with the idle ones:
	// a connection still open would be a response body nobody closed.
	tr.CloseIdleConnections()
	ct.waitClosed(t)
	cancelAll()
	// The log is complete once every answer is.
	gw.Close()

	done := slices.DeleteFunc(results, func(c *chaosCall) bool { return c == nil })
	if len(done) < calls {
		t.Errorf("only %d of %d calls ran within %v", len(done), calls, chaosTimeCap)
	}
	checkChaos(t, done, gw.Log(), base, breaker, faults)
	_, conns := ct.counts()
	t.Logf("%d calls, %d attempts, %d connections in %v", len(done), gw.Total(), conns, took.Round(time.Millisecond))
}

// chaosDo makes call i, reads its answer whole and records everything.
func chaosDo(t *testing.T, tr *Transport, url string, seed uint64, i int) *chaosCall {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	c := &chaosCall{
		id:      i,
		model:   chaosModels[rng.IntN(len(chaosModels))].name,
		stream:  rng.IntN(2) == 0,
		getBody: rng.IntN(2) == 0,
	}
	if rng.IntN(10) == 0 {
		c.deadline = time.Duration(30+rng.IntN(120)) * time.Millisecond
	}
	c.body = fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":"chaos call %d"}],"stream":%t,"nonce":"%016x"}`,
		c.model, i, c.stream, rng.Uint64())

	dl := chaosHardStop
	if c.deadline > 0 {
		dl = c.deadline
	}
	// The context is cancelled only after the connection check, so that a
	// response body the transport forgets to close is not cleaned up by
	// the cancellation and shows as a connection left open.
	ctx, cancel := context.WithTimeout(context.Background(), dl)
	c.cancel = cancel
	c.reqBody = &trackBody{Reader: bytes.NewReader(c.body)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", c.reqBody)
	if err != nil {
		t.Error(err)
		return c
	}
	if c.getBody {
		body := c.body
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(chaosHeader, strconv.Itoa(i))
	c.header = req.Header.Clone()

	began := time.Now()
	resp, err := tr.RoundTrip(req)
	c.roundTrip = time.Since(began)
	c.err = err
	if err == nil {
		c.status = resp.StatusCode
		c.shouldRetry = resp.Header.Values("X-Should-Retry")
		c.requestID = resp.Header.Get("X-Request-Id")
		c.got, c.readErr = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	c.elapsed = time.Since(began)
	c.headerAfter = req.Header
	if ctx.Err() != nil {
		c.hardStopped = c.deadline == 0
		c.shortExpired = c.deadline > 0
	}
	return c
}

// checkChaos checks every call against the server's log, and the totals.
func checkChaos(t *testing.T, calls []*chaosCall, log []llmtransporttest.Request, base *chaosBase, breaker bool, faults []llmtransporttest.Fault) {
	t.Helper()
	byCall := map[string][]llmtransporttest.Request{}
	for _, r := range log {
		id := r.Header.Get(chaosHeader)
		if id == "" {
			t.Errorf("the server got request %s without %s: %q", r.RequestID, chaosHeader, r.Body)
		}
		byCall[id] = append(byCall[id], r)
	}
	for _, rs := range byCall {
		slices.SortStableFunc(rs, func(a, b llmtransporttest.Request) int {
			x, _ := strconv.Atoi(a.Header.Get(chaosAttemptHeader))
			y, _ := strconv.Atoi(b.Header.Get(chaosAttemptHeader))
			return x - y
		})
	}

	var (
		failures   int
		kinds      = map[string]int{}
		maxAttempt int
		failedRetr int // attempts beyond the first of calls that did not succeed
		clean      int // calls that succeeded at their first attempt
		slowest    time.Duration
		overrun    = time.Duration(math.MinInt64) // the most a call took beyond its bound without slack
	)
	report := func(c *chaosCall, attempts []llmtransporttest.Request, format string, args ...any) {
		t.Helper()
		failures++
		if failures > 25 {
			return
		}
		var seq []string
		for _, a := range attempts {
			seq = append(seq, fmt.Sprintf("%s→%d %s", a.Fault, a.Status, a.RequestID))
		}
		for i, err := range base.attempts[strconv.Itoa(c.id)] {
			seq = append(seq, fmt.Sprintf("client %d: %v", i, err))
		}
		t.Errorf("%v, attempts [%s], got err=%v status=%d X-Should-Retry=%q request-id=%q read=%d bytes readErr=%v in %v: %s",
			c, strings.Join(seq, ", "), c.err, c.status, c.shouldRetry, c.requestID, len(c.got), c.readErr,
			c.elapsed.Round(time.Millisecond), fmt.Sprintf(format, args...))
	}
	for _, c := range calls {
		id := strconv.Itoa(c.id)
		attempts := byCall[id]
		base.mu.Lock()
		clientErrs := base.attempts[id]
		base.mu.Unlock()
		maxAttempt = max(maxAttempt, len(attempts))
		slowest = max(slowest, c.elapsed)
		bound := chaosBound(len(clientErrs)) + chaosSlack
		if c.deadline == 0 {
			overrun = max(overrun, c.elapsed-chaosBound(len(clientErrs)))
		}

		// Time.
		switch {
		case c.hardStopped:
			report(c, attempts, "the hard-stop deadline of %v expired: the call outlived its bound %v", chaosHardStop, chaosBound(1+chaosMaxRetries)+chaosSlack)
		case c.deadline == 0 && c.elapsed > bound:
			report(c, attempts, "took %v, over the policy's bound %v", c.elapsed, bound)
		case c.deadline > 0 && c.elapsed > c.deadline+chaosSlack:
			report(c, attempts, "took %v, over its deadline %v", c.elapsed, c.deadline)
		}

		// Attempts and request bodies.
		if len(attempts) > 1+chaosMaxRetries || len(clientErrs) > 1+chaosMaxRetries {
			report(c, attempts, "%d attempts reached the server, %d left the transport; want at most %d", len(attempts), len(clientErrs), 1+chaosMaxRetries)
		}
		if len(attempts) > len(clientErrs) {
			report(c, attempts, "the server saw %d attempts, the transport sent %d", len(attempts), len(clientErrs))
		}
		for n, a := range attempts {
			// An attempt the client cut (its first-byte timer, its
			// deadline) may have left while its body was being sent.
			cut := len(clientErrs) == len(attempts) && clientErrs[n] != nil
			if !bytes.Equal(a.Body, c.body) && !cut {
				report(c, attempts, "attempt %d carried body %q, want %q", n, a.Body, c.body)
			}
			if why, ok := finalFaults[a.Fault]; ok && n < len(attempts)-1 && !cut && !base.timedOut(a.RequestID) {
				// (An answer the client never got, or whose headers
				// came as the first-byte timer fired, is a timeout to
				// the transport.)
				report(c, attempts, "attempt %d was retried after %s", n, why)
			}
		}

		// The caller's request.
		if !c.reqBody.closedSoon() {
			report(c, attempts, "the request body was not closed")
		}
		if !headersEqual(c.header, c.headerAfter) {
			report(c, attempts, "the caller's request headers changed: %v, were %v", c.headerAfter, c.header)
		}

		// The outcome.
		if c.err != nil {
			var last error
			if len(clientErrs) > 0 {
				last = clientErrs[len(clientErrs)-1]
			}
			var coe *CircuitOpenError
			switch {
			case errors.Is(c.err, ErrCircuitOpen):
				kinds["error: circuit open"]++
				if !errors.As(c.err, &coe) || coe.Model != c.model {
					report(c, attempts, "an open-circuit error that is not a *CircuitOpenError for the call's model")
				}
				if !breaker {
					report(c, attempts, "an open circuit with the breaker off")
				}
			case last != nil && errors.Is(c.err, last):
				kinds["error: "+errorKind(c.err)]++
			case errors.Is(c.err, context.DeadlineExceeded) && c.shortExpired:
				kinds["error: deadline"]++
			default:
				report(c, attempts, "not a typed error: neither an open circuit, nor the base transport's error of the last attempt (%v), nor the call's deadline", last)
			}
			if !c.shortExpired && len(clientErrs) == len(attempts) {
				for i, err := range clientErrs {
					if err == nil && !base.timedOut(attempts[i].RequestID) {
						report(c, attempts, "an error although attempt %d got a response", i)
						break
					}
				}
			}
			if len(clientErrs) > 1 {
				failedRetr += len(clientErrs) - 1
			}
			continue
		}
		if len(attempts) == 0 {
			report(c, attempts, "a response although no attempt reached the server")
			continue
		}
		// The real last response: that of the last attempt that got one
		// (later attempts may have ended in transport errors).
		// A response that came as the first-byte timer fired may have
		// been a timeout to the transport (or not, when the body was
		// already in): it may be passed over, and only it.
		last := attempts[len(attempts)-1]
		kept := false // the response handed back is not the last attempt's
		if len(attempts) == len(clientErrs) {
			for i := len(clientErrs) - 1; i >= 0; i-- {
				if clientErrs[i] != nil {
					continue
				}
				last, kept = attempts[i], i < len(attempts)-1
				if attempts[i].RequestID == c.requestID || !base.timedOut(attempts[i].RequestID) {
					break
				}
			}
		}
		handedBack := len(c.shouldRetry) > 0
		switch {
		case c.requestID != last.RequestID || c.status != last.Status:
			report(c, attempts, "not the real last response: got %d %s, the last attempt was answered %d %s", c.status, c.requestID, last.Status, last.RequestID)
		case handedBack && (len(c.shouldRetry) != 1 || c.shouldRetry[0] != "false"):
			report(c, attempts, "X-Should-Retry %q, want one value, false", c.shouldRetry)
		case c.status >= 400 && !handedBack:
			report(c, attempts, "an error status handed back without X-Should-Retry: false")
		case c.readErr == nil && !bytes.Equal(c.got, last.ResponseBody):
			report(c, attempts, "read %q, the server sent %q", c.got, last.ResponseBody)
		case c.readErr != nil && !bytes.HasPrefix(last.ResponseBody, c.got):
			report(c, attempts, "read %q before %v, which the server did not send: it sent %q", c.got, c.readErr, last.ResponseBody)
		case c.readErr != nil && !brokenBody(last.Fault, c.stream) && !isTimeoutErr(c.readErr) && !(kept && errors.Is(c.readErr, errBodyCut)):
			// (A response kept through later attempts keeps what of its
			// body came before the retry: the rest may be cut.)
			report(c, attempts, "the body read failed (%v) although the server sent it whole", c.readErr)
		case c.readErr != nil && !isTypedReadErr(c.readErr):
			report(c, attempts, "the body read failed with an untyped error %v", c.readErr)
		}
		switch {
		case handedBack:
			kinds["handed back "+strconv.Itoa(c.status)]++
		case c.readErr != nil:
			kinds["success, body broken: "+errorKind(c.readErr)]++
		default:
			kinds["success"]++
		}
		if handedBack {
			failedRetr += max(len(clientErrs)-1, 0)
		} else if len(clientErrs) == 1 {
			clean++
		}
	}

	// The budget: every retry takes a token, tokens only come back with
	// successes (their own, and ratio of a token per clean success), and
	// the bucket starts with burst. So the retries of calls that did not
	// succeed are at most burst + ratio × clean successes.
	deposit := max(int64(chaosBudgetRatio*1000), 1)
	if limit := int64(chaosBudgetBurst)*1000 + int64(clean)*deposit; int64(failedRetr)*1000 > limit {
		t.Errorf("calls that did not succeed made %d retries, over the budget's bound %d (burst %d + %d clean successes × %v)",
			failedRetr, limit/1000, chaosBudgetBurst, clean, chaosBudgetRatio)
	}

	// Every fault was served, so the mix tested what it claims to.
	served := map[string]int{}
	for _, r := range log {
		served[r.Fault]++
	}
	if !breaker {
		for _, f := range faults {
			if served[f.Name()] == 0 {
				t.Errorf("fault %s was never served", f.Name())
			}
		}
	}
	if failures > 25 {
		t.Errorf("… and %d more failures", failures-25)
	}
	t.Logf("outcomes: %s", sortedCounts(kinds))
	t.Logf("faults served: %s", sortedCounts(served))
	t.Logf("max attempts per call %d; retries of calls that did not succeed %d (budget bound %d); slowest call %v; most over the bound without slack %v",
		maxAttempt, failedRetr, chaosBudgetBurst+clean*int(deposit)/1000, slowest.Round(time.Millisecond), overrun.Round(time.Millisecond))
}

func headersEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// isTimeoutErr reports whether err is a deadline or the first-byte timeout
// cutting a body, which may happen to any answer on a slow machine.
func isTimeoutErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errFirstByteTimeout) || errors.Is(err, context.Canceled)
}

// isTypedReadErr reports whether a body read error is one a caller can
// recognise: the connection broke, or a deadline passed.
func isTypedReadErr(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || isTimeoutErr(err)
}

// errorKind names an error for the summary.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errFirstByteTimeout):
		return "first-byte timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	case strings.Contains(err.Error(), "response headers exceeded"):
		return "headers too large"
	case errors.As(err, &ne) && ne.Timeout():
		return "net timeout"
	}
	return "other: " + err.Error()
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

// TestRetryDoesNotWaitForDiscardedBody: a retried answer whose body the
// server leaves open must not hold the retry up. Two shapes: a 200 event
// stream whose first event is an error and which then stays open (as a
// gateway sending keep-alives until its upstream gives up), and a 500 whose
// body stalls after more than the transport peeks. The next attempt must
// be made at once, without a deadline or a first-byte timeout to end the
// wait. (Found while building the chaos test: the transport drained a few
// KiB of every discarded body to keep its connection, and that read
// blocked for as long as the server kept the body open.)
func TestRetryDoesNotWaitForDiscardedBody(t *testing.T) {
	tests := []struct {
		name  string
		serve func(w http.ResponseWriter)
	}{
		{"error-first stream left open", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"error\":{\"message\":\"upstream error\",\"type\":\"server_error\",\"code\":\"do_request_failed\"}}\n\n")
		}},
		{"error body stalled after the peek", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", strconv.Itoa(2*maxPeek))
			w.WriteHeader(http.StatusInternalServerError)
			w.Write(bytes.Repeat([]byte("x"), maxPeek+100))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			var n atomic.Int32
			srv, ct, base := trackedServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if n.Add(1) > 1 {
					io.WriteString(w, `{"ok":true}`)
					return
				}
				tt.serve(w)
				w.(http.Flusher).Flush()
				<-r.Context().Done() // the body stays open until the client goes
			})
			tr := New(base, fastRetries()...)
			done := make(chan struct{})
			var (
				resp *http.Response
				err  error
			)
			go func() {
				defer close(done)
				resp, err = tr.RoundTrip(newChatRequest(t, t.Context(), srv.URL))
			}()
			select {
			case <-done:
			case <-time.After(hangGuard):
				t.Fatalf("the retry waited for the discarded body: still in RoundTrip after %v, %d attempts", hangGuard, n.Load())
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(b) != `{"ok":true}` || n.Load() != 2 {
				t.Errorf("got %d %q (%v) after %d attempts, want 200 {\"ok\":true} after 2", resp.StatusCode, b, err, n.Load())
			}
			tr.CloseIdleConnections()
			ct.waitClosed(t)
		})
	}
}
