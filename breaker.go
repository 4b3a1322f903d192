package llmtransport

import (
	"time"
)

// circuitKey names one circuit: the host the request goes to and the model it
// asks for ("" for a per-host circuit).
type circuitKey struct {
	host, model string
}

// outcome is what an attempt means to its circuit.
type outcome uint8

const (
	outcomeSuccess  outcome = iota // the model answered
	outcomeFailure                 // the model (or the path to it) is failing
	outcomeExcluded                // says nothing about the model's health
)

// breakerConfig holds the circuit breaker options.
type breakerConfig struct {
	disabled bool
}

// circuits is the per-(host, model) registry of circuit breakers.
type circuits struct {
	cfg breakerConfig
}

func newCircuits(cfg breakerConfig) *circuits {
	return &circuits{cfg: cfg}
}

// guard runs attempt under the circuit of key, if the circuit admits it, and
// records the outcome attempt returns (with the server's wait hint, which
// lengthens an open period). When the circuit refuses, attempt is not called
// and guard returns a *CircuitOpenError. attempt runs synchronously, at most
// once. A nil *circuits admits everything.
func (r *circuits) guard(key circuitKey, attempt func() (outcome, time.Duration)) error {
	attempt()
	return nil
}

func defaultBreakerConfig() breakerConfig { return breakerConfig{} }
