package llmtransport

import (
	"cmp"
	"io"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmtransport/llmtransport/internal/pacing"
	"github.com/llmtransport/llmtransport/internal/reqmodel"
)

// This file wires [WithPacing] into the call: the estimate of a request's
// cost (from the numbers the model scan reads), the admit loop before each
// attempt (run), the settling of every ticket (exchange, run, abandon), the
// span event and metrics, and the [Transport.Limits] snapshot.

// pacer is a Transport's pacer, keyed like its cooldowns: host, model and
// credential fingerprint.
type pacer = pacing.Pacer[cooldownKey]

// newPacer returns the pacer of a Transport, nil when pacing is off.
func newPacer(on bool) *pacer {
	if !on {
		return nil
	}
	return pacing.New[cooldownKey](0)
}

// pacedCall is a call's pacing state. Its zero value is pacing off.
type pacedCall struct {
	on     bool
	held   bool            // tk is a reservation not yet settled
	cred   uint64          // the credential fingerprint of the request
	params reqmodel.Params // the numbers the model scan read
	cost   pacing.Cost
	tk     pacing.Ticket
}

// findModel returns the model of the call's request ([reqmodel.Find]); when
// pacing is on it reads, in the same scan, the numbers the request's cost
// is estimated from.
func (c *call) findModel() (string, io.ReadCloser, error) {
	if c.t.pacer == nil {
		return reqmodel.Find(c.req, c.buffered)
	}
	c.paced.on = true
	return reqmodel.FindWith(c.req, c.buffered, &c.paced.params)
}

// inBody is [reqmodel.InBody], reading the numbers too when pacing is on.
func (c *call) inBody(b []byte, whole bool) string {
	if !c.paced.on {
		return reqmodel.InBody(b, whole)
	}
	return reqmodel.InBodyWith(b, whole, &c.paced.params)
}

// pacePrepare estimates the call's cost, once its body and model are
// known, and again for each fallback target (a route may change the API
// key and the body): the body's length (buffered, else its Content-Length, else the
// part read of a body too large to buffer) and the numbers of its scan.
func (c *call) pacePrepare() {
	if !c.paced.on {
		return
	}
	n := c.req.ContentLength
	switch {
	case c.buffered != nil:
		n = int64(len(c.buffered))
	case n <= 0:
		n = int64(len(c.prefix))
	}
	c.paced.cost = pacing.Estimate(n, c.paced.params.MaxOutput, c.paced.params.N)
	c.paced.cred = c.t.cooldowns.credentialOf(c.req)
}

// paceKey is the key of the call's current attempt.
func (c *call) paceKey() cooldownKey { return cooldownKey{c.key, c.paced.cred} }

// pace waits, before an attempt, until the pacer admits it, and the
// fleet's limiter too when there is one ([SharedLimiter]), and takes its
// reservation. A wait that would go past [WithMaxRetryWait] (all of the
// attempt's pacing waits together) or past the request's deadline is not
// taken: the attempt is sent at once with a reservation all the same
// (pacing.Pacer.Reserve; the limiter is not asked again), and the server
// decides. It returns the context's error when the caller gives up during
// a wait; nothing is held then.
func (c *call) pace() error {
	if !c.paced.on {
		return nil
	}
	return c.paceWait()
}

func (c *call) paceWait() error {
	p, key, cost := c.t.pacer, c.paceKey(), &c.paced.cost
	var waited time.Duration
	for {
		now := time.Now()
		w, tk := p.Admit(key, *cost, now)
		fleet := false
		if w == 0 {
			if w = c.fleetWait(tk); w == 0 {
				c.paced.tk, c.paced.held = tk, true
				return nil
			}
			fleet = true
		}
		if waited+w > c.maxRetryWait() || !fits(c.ctx, w) {
			c.trace.paced(w, false, fleet)
			if !fleet {
				tk = p.Reserve(key, *cost, now)
			}
			c.paced.tk, c.paced.held = tk, true
			return nil
		}
		if fleet {
			tk.Release() // admitted again after the wait
		}
		c.trace.paced(w, true, fleet)
		if err := sleep(c.ctx, w); err != nil {
			return err
		}
		waited += w
		c.rec.waited += w // the Outcome's Waited
	}
}

// fleetWait asks the fleet's limiter for the attempt that the pacer just
// admitted with tk, and returns the wait it answers: 0 without a limiter,
// when the pacer has learned no rate of the key, or when the limiter
// counted the attempt.
func (c *call) fleetWait(tk pacing.Ticket) time.Duration {
	l := c.t.limiter
	if l == nil {
		return 0
	}
	rates := tk.Rates()
	r := Reservation{Host: c.key.host, Model: c.key.model, Credential: c.paced.cred}
	known := false
	for i, d := range [pacing.NumDims]*RateCost{&r.Requests, &r.Tokens, &r.InputTokens, &r.OutputTokens} {
		rate, cost := rates[i], c.paced.cost[i]
		if rate.Known() && cost > 0 && cost <= rate.Limit {
			*d = RateCost{Limit: rate.Limit, Window: rate.Window, Cost: cost}
			known = true
		}
	}
	if !known {
		return 0
	}
	return max(l.Reserve(c.ctx, r), 0)
}

// paceRelease gives the reservation back: the attempt was not sent (the
// circuit refused it, its body could not be replayed).
func (c *call) paceRelease() {
	if c.paced.held {
		c.paced.held = false
		c.paced.tk.Release()
	}
}

// paceSettle settles the attempt's reservation when its round trip is
// over: with the headers of its response, whatever its status, or, when
// none came (a transport error, a cancellation), as sent but not answered.
func (c *call) paceSettle(a *attemptResult) {
	if !c.paced.held {
		return
	}
	c.paced.held = false
	if a.err != nil {
		c.paced.tk.Forget(time.Now())
		return
	}
	c.paced.tk.Observe(a.resp.StatusCode, a.resp.Header, time.Now())
}

// paceAbandon settles a reservation a panic left behind, as sent.
func (c *call) paceAbandon() {
	if c.paced.held {
		c.paced.held = false
		c.paced.tk.Forget(time.Now())
	}
}

// LearnedLimit is what pacing ([WithPacing]) learned of one rate limit
// from the rate-limit headers of its responses: the limits of one host,
// model and API key. [Transport.Limits] returns them. Requests of different
// API keys to the same host and model have a LearnedLimit each; which key
// each is for is not said (the transport keeps only a fingerprint of it, in
// memory), only an opaque id of it.
type LearnedLimit struct {
	Host, Model string
	// Credential is the opaque id of the API key, as in
	// [CooldownStatus.Credential]; "" for requests without a key.
	Credential string
	// Requests and Tokens are OpenAI's and Azure's dimensions (and
	// Anthropic's requests and total tokens); InputTokens and OutputTokens
	// are Anthropic's. A zero LimitWindow is not known: the headers did not
	// say, were not believable, or the window has passed with no response
	// of the next one yet.
	Requests, Tokens, InputTokens, OutputTokens LimitWindow
}

// LimitWindow is one dimension of a rate limit as pacing knows it.
type LimitWindow struct {
	// Limit is what a window allows.
	Limit int64
	// Remaining is the least the server said was left in the current
	// window, in the responses read: requests still in flight are not
	// subtracted, nor the successes whose headers pacing did not read
	// while far from the limit (up to seven in eight, see WithPacing).
	Remaining int64
	// Reset is how long until the window is whole again, at the latest.
	Reset time.Duration
}

// Known reports whether w says anything.
func (w LimitWindow) Known() bool { return w.Limit > 0 }

// Limits returns what pacing has learned of the rate limits of the hosts
// and models the transport sent requests to, sorted by host, model and
// credential id: a snapshot for dashboards and debugging. It is nil when pacing is off
// ([WithPacing]); limits of which nothing is known now are left out.
func (t *Transport) Limits() []LearnedLimit {
	if t.pacer == nil {
		return nil
	}
	var out []LearnedLimit
	t.pacer.Each(time.Now(), func(k cooldownKey, l pacing.Limits) {
		w := func(d pacing.Dim) LimitWindow {
			return LimitWindow{Limit: l[d].Limit, Remaining: l[d].Remaining, Reset: l[d].Reset}
		}
		ll := LearnedLimit{Host: k.host, Model: k.model, Credential: t.cooldowns.credentialID(k.cred),
			Requests: w(pacing.Requests), Tokens: w(pacing.Tokens),
			InputTokens: w(pacing.InputTokens), OutputTokens: w(pacing.OutputTokens)}
		if ll.Requests.Known() || ll.Tokens.Known() || ll.InputTokens.Known() || ll.OutputTokens.Known() {
			out = append(out, ll)
		}
	})
	slices.SortFunc(out, func(a, b LearnedLimit) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Model, b.Model), cmp.Compare(a.Credential, b.Credential))
	})
	return out
}

// The span event of a pacing wait and its attributes.
const (
	eventPaced      = "paced"
	keyPacingWait   = attribute.Key("llm.pacing.wait")   // seconds
	keyPacingWaited = attribute.Key("llm.pacing.waited") // false: past the cap or deadline, sent at once
	keyPacingSource = attribute.Key("llm.pacing.source") // "local" or "fleet" (SharedLimiter)
)

// pacingSource returns the llm.pacing.source of a wait.
func pacingSource(fleet bool) attribute.KeyValue {
	if fleet {
		return keyPacingSource.String("fleet")
	}
	return keyPacingSource.String("local")
}

// paced records a pacing wait of d before an attempt: waited, or not
// waited for because it was past the cap or the deadline (the attempt went
// at once); asked for by the fleet's limiter, or by this transport's pacer.
func (c *callTrace) paced(d time.Duration, waited, fleet bool) {
	c.t.m.paced(c.ctx, c.host, c.model, d, waited, fleet)
	if c.st == nil {
		return
	}
	c.st.AddEvent(eventPaced, trace.WithAttributes(keyPacingWait.Float64(d.Seconds()), keyPacingWaited.Bool(waited), pacingSource(fleet)))
}
