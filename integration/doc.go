// Package integration holds the tests that need what the library itself
// does not import: the real SDKs (openai-go v3 and go-openai) driven through
// every entry point of the transport, anthropic-sdk-go v2 and langchaingo's
// OpenAI LLM, the SDK examples, and the end-to-end test against a real
// Jaeger (build tag jaeger, run by scripts/jaeger-e2e.sh).
//
// It is a module of its own, so that the library's go.mod asks only for what
// the library imports: adding llmtransport to a program never moves its
// openai-go, go-openai, langchaingo, OTLP exporter or gRPC versions. It has
// no API.
package integration
