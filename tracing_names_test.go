package llmtransport

import (
	"net/http"
	"net/url"
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

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pass@gw.example/v1/chat/completions":                              "https://gw.example/v1/chat/completions",
		"https://g.example/v1beta/models/m:generateContent?key=AIzaXYZ&alt=sse":         "https://g.example/v1beta/models/m:generateContent?key=REDACTED&alt=sse",
		"https://gw.example/x?api_key=1&api-key=2&apiKey=3&access_token=4&token=5&q=ok": "https://gw.example/x?api_key=REDACTED&api-key=REDACTED&apiKey=REDACTED&access_token=REDACTED&token=REDACTED&q=ok",
		"https://s3.example/o?X-Amz-Signature=abc&X-Amz-Credential=def&sig=ghi":         "https://s3.example/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&sig=REDACTED",
		"https://gw.example/v1/models#frag":                                             "https://gw.example/v1/models",
		"https://gw.example/keys/sk-abcdefghijklmnop/usage":                             "https://gw.example/keys/sk-REDACTED/usage",
		"http://127.0.0.1:8080/v1/chat/completions?x=1":                                 "http://127.0.0.1:8080/v1/chat/completions?x=1",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactURL(u); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactSecrets(t *testing.T) {
	for in, want := range map[string]string{
		"Incorrect API key provided: sk-proj-abc123DEF456ghi.":                                                        "Incorrect API key provided: sk-REDACTED.",
		"key sk-ant-api03-AbCdEf_123-xyz rejected":                                                                    "key sk-REDACTED rejected",
		"Authorization: Bearer abc.def-ghi_jkl":                                                                       "Authorization: Bearer REDACTED",
		`Post "https://g.example/v1/x?key=AIzaSyA-1234567890abcdefghijklmnopqrstu&alt=sse": EOF`:                      `Post "https://g.example/v1/x?key=REDACTED&alt=sse": EOF`,
		"bad token=abcd1234 here":                                                                                     "bad token=REDACTED here",
		"header x-api-key: abcdef123456 invalid":                                                                      "header x-api-key: REDACTED invalid",
		"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_part":                                               "jwt eyJREDACTED",
		"opaque ABCdef0123456789ABCdef0123456789ABCdef0123 token":                                                     "opaque REDACTED token",
		"Rate limit reached for gpt-4o (request id: req_0123456789abcdef0123456789abcdef)":                            "Rate limit reached for gpt-4o (request id: req_0123456789abcdef0123456789abcdef)",
		"trace 4bf92f3577b34da6a3ce929d0e0e4736 sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": "trace 4bf92f3577b34da6a3ce929d0e0e4736 sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"the task-force disk_usage is fine":                                                                           "the task-force disk_usage is fine",
		"":                                                                                                            "",
	} {
		if got := redactSecrets(in); got != want {
			t.Errorf("redactSecrets(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}
