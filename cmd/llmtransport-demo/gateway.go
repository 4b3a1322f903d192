package main

import (
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

// The models of the demo gateway.
const (
	modelHealthy     = "gpt-4o-mini"
	modelFlaky       = "claude-3-5-sonnet"
	modelRateLimited = "gemini-2.0-flash"
	modelDead        = "llama-3.1-70b"
	modelNoQuota     = "o1-pro" // the account has no quota for it: 429 insufficient_quota, every time
)

// loadModels are the models the load cycles through; every quotaEvery-th
// call goes to modelNoQuota instead.
var loadModels = []string{modelHealthy, modelFlaky, modelRateLimited, modelDead}

// models are all the demo's models, in the order of the report.
var models = append(loadModels[:len(loadModels):len(loadModels)], modelNoQuota)

// quotaEvery: one call in quotaEvery is for modelNoQuota.
const quotaEvery = 20

// nonRetryable are the gateway's answers that no retry can turn into
// success (by the gateway's construction, not by anyone's classifier): a
// request sent after one of them, in the same call, is wasted.
var nonRetryable = map[string]bool{
	llmtransporttest.InsufficientQuota().Name(): true,
}

// newGateway starts a fake gateway with the demo's fault mix. Two gateways
// made with the same cfg and start answer the same request sequence of a
// model the same way.
func newGateway(cfg config, start time.Time) *llmtransporttest.Server {
	flaky := llmtransporttest.Random(cfg.faultRate, cfg.seed,
		llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
		llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel for model "+modelFlaky),
		llmtransporttest.Overloaded(),
		llmtransporttest.BadGatewayHTML(),
		llmtransporttest.ResetBeforeHeaders(),
		llmtransporttest.ErrorFirstStream(),
		llmtransporttest.Delay(300*time.Millisecond, llmtransporttest.OpenAIError(504, "server_error", "", "Gateway Timeout")),
	)
	limited := llmtransporttest.Random(min(1, 1.5*cfg.faultRate), cfg.seed+1,
		llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 150*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.ResetTokens, 200*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.BodyRetryDelay, 250*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.MessageText, 300*time.Millisecond),
		llmtransporttest.RateLimited(llmtransporttest.RetryAfterSeconds, time.Second),
	)
	recovery := start.Add(cfg.duration / 2)
	down := llmtransporttest.NewAPIError(503, "get_channel_failed", "no available channel for model "+modelDead)
	return llmtransporttest.NewServer(
		llmtransporttest.WithLatency(15*time.Millisecond),
		llmtransporttest.WithChunkDelay(2*time.Millisecond),
		llmtransporttest.WithScript(modelHealthy),
		llmtransporttest.WithModel(modelFlaky, flaky),
		llmtransporttest.WithModel(modelRateLimited, limited),
		llmtransporttest.WithModel(modelNoQuota, func(int) llmtransporttest.Fault { return llmtransporttest.InsufficientQuota() }),
		llmtransporttest.WithModel(modelDead, func(int) llmtransporttest.Fault {
			if time.Now().Before(recovery) {
				return down
			}
			return llmtransporttest.OK()
		}),
	)
}
