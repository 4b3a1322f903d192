package redisstate

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/llmtransport/llmtransport"
	"github.com/redis/go-redis/v9"
)

// watcher is one subscription: a goroutine that subscribes to the
// namespace's channel, backfills, delivers, and reconnects.
type watcher struct {
	s      *State
	apply  func(llmtransport.Hold)
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
}

// Subscribe starts a watcher that delivers to apply, from its own
// goroutine and one at a time, the holds of the namespace: those live in
// Redis when it subscribes and after every reconnection (the backfill,
// with their remaining TTL), and those published meanwhile (pushed, with
// the TTL Redis gave them), this State's own included. A release is
// delivered with TTL 0. apply must not block for long: the watcher waits
// for it.
//
// At every (re)subscription the watcher also re-sends the live holds this
// State published that Redis did not store (it was down), and all of them
// when Redis lost its data (restarted empty): holds survive a restart
// while one subscribed replica that published them lives.
//
// stop ends the subscription and returns when the watcher's goroutine is
// gone; it is idempotent. After Close, Subscribe delivers nothing.
func (s *State) Subscribe(apply func(llmtransport.Hold)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{s: s, apply: apply, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return func() {}
	}
	s.subs[w] = struct{}{}
	s.mu.Unlock()
	go w.run(ctx)
	return w.stop
}

func (w *watcher) stop() {
	w.once.Do(func() {
		w.cancel()
		w.mu.Lock()
		w.closed = true
		if w.ps != nil {
			_ = w.ps.Close() // unblocks a pending receive
		}
		w.mu.Unlock()
		<-w.done
		w.s.mu.Lock()
		delete(w.s.subs, w)
		w.s.mu.Unlock()
	})
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	backoff := minBackoff
	for ctx.Err() == nil {
		if w.session(ctx) {
			backoff = minBackoff
		}
		d := backoff + rand.N(backoff/2+1)
		backoff = min(2*backoff, maxBackoff)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session subscribes, backfills and delivers until the connection fails or
// ctx ends. It reports whether the subscription was confirmed.
func (w *watcher) session(ctx context.Context) (subscribed bool) {
	s := w.s
	ps, err := w.open(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.m.count(s.m.errors, keyOp.String("subscribe"))
		}
		return false
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		_ = ps.Close()
		return false
	}
	w.ps = ps
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.ps = nil
		w.mu.Unlock()
		_ = ps.Close()
	}()

	// Messages published from now on queue on the connection: the
	// backfill below misses nothing.
	if !w.backfill(ctx) {
		return false // backs off as a failed subscription
	}

	pinged := false
	for {
		wait := s.cfg.healthCheck
		if pinged {
			wait = s.cfg.timeout
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if err != nil {
			if ctx.Err() != nil {
				return true
			}
			if isTimeout(err) && !pinged {
				pctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
				err := ps.Ping(pctx) // bounded like every call (WithTimeout)
				cancel()
				if err != nil {
					s.m.count(s.m.errors, keyOp.String("ping"))
					return true
				}
				pinged = true
				continue
			}
			op := "subscribe"
			if pinged {
				op = "ping"
			}
			s.m.count(s.m.errors, keyOp.String(op))
			return true
		}
		pinged = false
		if m, ok := msg.(*redis.Message); ok {
			w.deliver(m.Payload)
		}
	}
}

// open subscribes to the namespace's channel and waits for the
// confirmation, within the timeout. The go-redis calls run in a goroutine
// of their own, for a dial or a handshake with a silent server lasts the
// client's timeouts: when the timeout or ctx ends first, open returns and
// that goroutine closes the subscription once they end (Close waits for
// it).
func (w *watcher) open(ctx context.Context) (*redis.PubSub, error) {
	s := w.s
	type result struct {
		ps  *redis.PubSub
		err error
	}
	ch := make(chan result) // unbuffered: a result is taken, or abandoned
	abandoned := make(chan struct{})
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		ps := s.client.Subscribe(ctx) // no channel yet: no connection
		err := ps.Subscribe(ctx, s.keys.channel)
		for err == nil {
			var msg any
			msg, err = ps.ReceiveTimeout(ctx, s.cfg.timeout)
			if _, ok := msg.(*redis.Subscription); ok {
				break
			}
		}
		if err != nil {
			_ = ps.Close()
			ps = nil
		}
		select {
		case ch <- result{ps, err}:
		case <-abandoned:
			if ps != nil {
				_ = ps.Close()
			}
		}
	}()
	t := time.NewTimer(2 * s.cfg.timeout) // the handshake and the confirmation
	defer t.Stop()
	select {
	case r := <-ch:
		return r.ps, r.err
	case <-t.C:
		close(abandoned)
		return nil, context.DeadlineExceeded
	case <-ctx.Done():
		close(abandoned)
		return nil, ctx.Err()
	}
}

// backfill checks the namespace's epoch (re-sending this State's holds as
// needed), then reads and delivers the live holds. It reports success.
func (w *watcher) backfill(ctx context.Context) bool {
	s := w.s
	var epoch string
	fresh := randomToken()
	err := s.call(ctx, func(ctx context.Context) error {
		var err error
		epoch, err = epochScript.Run(ctx, s.client, []string{s.keys.epoch}, fresh, epochTTL.Milliseconds()).Text()
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			s.m.count(s.m.errors, keyOp.String("backfill"))
		}
		return false
	}
	// Holds written under another token were lost with Redis's data.
	s.resend(epoch, true)

	var vals []any
	err = s.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = backfillScript.Run(ctx, s.client, []string{s.keys.index}, maxBackfill).Slice()
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			s.m.count(s.m.errors, keyOp.String("backfill"))
		}
		return false
	}
	for i := 0; i+1 < len(vals); i += 2 {
		v, _ := vals[i].(string)
		p, _ := vals[i+1].(int64)
		h, err := decodeValue(v, time.Duration(p)*time.Millisecond)
		if err != nil || ctx.Err() != nil {
			continue
		}
		s.m.count(s.m.received, keyKind.String(h.Kind.String()), keySource.String("backfill"))
		w.apply(h)
	}
	return true
}

func (w *watcher) deliver(payload string) {
	s := w.s
	h, sent, err := decodeMessage(payload)
	if err != nil {
		return
	}
	s.m.recordLag(time.Since(sent))
	if h.Kind == llmtransport.HoldRelease {
		s.forget(h)
	}
	s.m.count(s.m.received, keyKind.String(h.Kind.String()), keySource.String("push"))
	w.apply(h)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
