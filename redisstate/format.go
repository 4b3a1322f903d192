package redisstate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/llmtransport/llmtransport"
)

// Keys, values and messages.
//
// Every key of a namespace starts with "llmt:{NS}:", NS being the namespace
// with every byte outside [A-Za-z0-9._-] percent-encoded, so that the braces
// are the Redis Cluster hash tag of the namespace: all its keys live in one
// slot, and every script touches one node.
//
//	llmt:{NS}:cd:HOST:MODEL:CRED   a cooldown hold (CRED: 16 hex digits of the keyed fingerprint)
//	llmt:{NS}:open:HOST:MODEL      a circuit held open
//	llmt:{NS}:lease:HOST:MODEL     the probe lease of a circuit
//	llmt:{NS}:rl:HOST:MODEL:CRED   the limiter's GCRA state (WithLimiter): a hash of one TAT per dimension
//	llmt:{NS}:idx                  sorted set of the hold keys, scored by their expiry on the Redis clock
//	llmt:{NS}:epoch                random token telling a restarted (emptied) Redis from a live one
//	llmt:{NS}:holds                the pub/sub channel
//
// HOST and MODEL are percent-encoded the same way (':' and '%' included);
// when the two together exceed maxKeyPart bytes they are replaced by "#"
// and 32 hex digits of their SHA-256, the value keeping them whole.
//
// A hold key's value is "KIND|CRED|REASON|HOST|MODEL" (KIND "cooldown" or
// "open"; '%' and '|' percent-encoded in the last three), and its TTL is
// the hold's. A message on the channel is
//
//	llmt1|SENT|TTL|KIND|CRED|REASON|HOST|MODEL
//
// SENT being the publisher's wall clock in Unix microseconds when Publish
// was called (used only for the propagation-lag metric) and TTL the hold's
// remaining time in milliseconds as Redis holds it after the write (0 for a
// release). No credential appears anywhere but as CRED.

const (
	keyPrefix   = "llmt:{"
	msgVersion  = "llmt1"
	maxKeyPart  = 200
	maxHoldText = 4096 // host+model+reason beyond this are refused (dropped as invalid)
)

// keys are the names of one namespace.
type keys struct {
	prefix  string // llmt:{NS}:
	index   string
	epoch   string
	channel string
}

func newKeys(ns string) keys {
	p := keyPrefix + escape(ns, true) + "}:"
	return keys{prefix: p, index: p + "idx", epoch: p + "epoch", channel: p + "holds"}
}

// circuitPart returns "HOST:MODEL" for keys.
func circuitPart(host, model string) string {
	h, m := escape(host, true), escape(model, true)
	if len(h)+len(m) > maxKeyPart {
		sum := sha256.Sum256([]byte(host + "\x00" + model))
		return "#" + hex.EncodeToString(sum[:16])
	}
	return h + ":" + m
}

// holdKey returns the key that stores h (a cooldown or an open hold), and
// the open key for a release.
func (k keys) holdKey(h llmtransport.Hold) string {
	switch h.Kind {
	case llmtransport.HoldCooldown:
		return k.prefix + "cd:" + circuitPart(h.Host, h.Model) + ":" + credHex(h.Credential)
	default:
		return k.prefix + "open:" + circuitPart(h.Host, h.Model)
	}
}

// limitKey returns the limiter's key of a rate limit: a hash of the TATs
// of its dimensions (see reserveScript).
func (k keys) limitKey(host, model string, cred uint64) string {
	return k.prefix + "rl:" + circuitPart(host, model) + ":" + credHex(cred)
}

func (k keys) leaseKey(host, model string) string {
	return k.prefix + "lease:" + circuitPart(host, model)
}

func credHex(c uint64) string {
	var b [16]byte
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = digits[c&0xf]
		c >>= 4
	}
	return string(b[:])
}

// encodeValue returns "KIND|CRED|REASON|HOST|MODEL".
func encodeValue(h llmtransport.Hold) string {
	var b strings.Builder
	b.Grow(len(h.Reason) + len(h.Host) + len(h.Model) + 32)
	b.WriteString(h.Kind.String())
	b.WriteByte('|')
	b.WriteString(credHex(h.Credential))
	b.WriteByte('|')
	b.WriteString(escape(h.Reason, false))
	b.WriteByte('|')
	b.WriteString(escape(h.Host, false))
	b.WriteByte('|')
	b.WriteString(escape(h.Model, false))
	return b.String()
}

// messageHead returns "llmt1|SENT|", to which the script appends
// "TTL|VALUE".
func messageHead(sent time.Time) string {
	return msgVersion + "|" + strconv.FormatInt(sent.UnixMicro(), 10) + "|"
}

var errFormat = errors.New("redisstate: malformed hold")

// decodeValue parses a value with the TTL given.
func decodeValue(v string, ttl time.Duration) (llmtransport.Hold, error) {
	var h llmtransport.Hold
	f := strings.SplitN(v, "|", 5)
	if len(f) != 5 {
		return h, errFormat
	}
	switch f[0] {
	case "cooldown":
		h.Kind = llmtransport.HoldCooldown
	case "open":
		h.Kind = llmtransport.HoldOpen
	case "release":
		h.Kind = llmtransport.HoldRelease
	default:
		return h, errFormat
	}
	c, err := strconv.ParseUint(f[1], 16, 64)
	if err != nil || len(f[1]) != 16 {
		return h, errFormat
	}
	h.Credential = c
	var ok1, ok2, ok3 bool
	h.Reason, ok1 = unescape(f[2])
	h.Host, ok2 = unescape(f[3])
	h.Model, ok3 = unescape(f[4])
	if !ok1 || !ok2 || !ok3 || strings.Contains(f[4], "|") {
		return h, errFormat
	}
	if h.Kind != llmtransport.HoldRelease {
		if ttl <= 0 {
			return h, errFormat
		}
		h.TTL = ttl
	}
	return h, nil
}

// decodeMessage parses a message of the channel; sent is the publisher's
// clock, for the lag metric only.
func decodeMessage(m string) (h llmtransport.Hold, sent time.Time, err error) {
	f := strings.SplitN(m, "|", 4)
	if len(f) != 4 || f[0] != msgVersion {
		return h, sent, errFormat
	}
	us, err1 := strconv.ParseInt(f[1], 10, 64)
	ms, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || ms < 0 {
		return h, sent, errFormat
	}
	h, err = decodeValue(f[3], time.Duration(ms)*time.Millisecond)
	return h, time.UnixMicro(us), err
}

// escape percent-encodes '%' and '|' (values), and for keys every byte
// outside [A-Za-z0-9._-].
func escape(s string, key bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i], key) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexd = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c, key) {
			b = append(b, '%', hexd[c>>4], hexd[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func mustEscape(c byte, key bool) bool {
	if !key {
		return c == '%' || c == '|'
	}
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		return false
	}
	return true
}

func unescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b = append(b, byte(v))
		i += 2
	}
	return string(b), true
}
