package llmtransport

import (
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
)

func TestInjectCopiesHeaders(t *testing.T) {
	tel := newTelemetry(t)
	tr := newTracer(tracingConfig{tp: tel.tp, prop: propagation.TraceContext{}})
	req, _ := http.NewRequest(http.MethodPost, "https://api.openai.com/v1/chat/completions", nil)
	req.Header.Set("Authorization", "Bearer x")
	ctx, c := tr.startCall(t.Context(), req, "gpt-4o")
	ctx, a := tr.startAttempt(ctx, c.st, req, 0)
	out := a.inject(req.WithContext(ctx))
	if out.Header.Get("traceparent") == "" {
		t.Fatal("nothing injected")
	}
	if req.Header.Get("traceparent") != "" || len(req.Header) != 1 {
		t.Errorf("caller's headers modified: %v", req.Header)
	}
	if out.Header.Get("Authorization") != "Bearer x" {
		t.Errorf("injected request lost its headers: %v", out.Header)
	}
}

func TestOperationName(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/chat/completions":                                "chat",
		"/openai/deployments/gpt-4o/chat/completions":         "chat",
		"/v1/completions":                                     "text_completion",
		"/v1/embeddings":                                      "embeddings",
		"/v1/responses":                                       "chat",
		"/v1/messages":                                        "chat",
		"/v1beta/models/gemini-2.5-pro:generateContent":       "generate_content",
		"/v1beta/models/gemini-2.5-pro:streamGenerateContent": "generate_content",
		"/v1beta/models/text-embedding-004:embedContent":      "embeddings",
		"/v1/images/generations":                              "image_generation",
		"/v1/models":                                          "request",
		"/v1/files/file-abc":                                  "request",
		"/a:b/c":                                              "request",
	} {
		if got := operationName(path); got != want {
			t.Errorf("operationName(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestProviderName(t *testing.T) {
	for host, want := range map[string]string{
		"api.openai.com":                          "openai",
		"myres.openai.azure.com":                  "azure.ai.openai",
		"api.anthropic.com":                       "anthropic",
		"generativelanguage.googleapis.com":       "gcp.gemini",
		"us-central1-aiplatform.googleapis.com":   "gcp.vertex_ai",
		"openrouter.ai":                           "openrouter",
		"bedrock-runtime.us-east-1.amazonaws.com": "aws.bedrock",
		"gateway.internal":                        "",
		"127.0.0.1":                               "",
	} {
		if got := providerName(host); got != want {
			t.Errorf("providerName(%q) = %q, want %q", host, got, want)
		}
	}
}
