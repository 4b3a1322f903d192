package llmtransport

import (
	"context"
	"net/http"
)

type modelKey struct{}

// ContextWithModel returns a copy of ctx that names the model of the requests
// sent with it. The model keys the circuit breaker, the cooldown and the span
// names; naming it explicitly spares the transport from looking for it in the
// request body or path.
func ContextWithModel(ctx context.Context, model string) context.Context {
	return context.WithValue(ctx, modelKey{}, model)
}

// requestModel returns the model that req asks for: the one named by
// [ContextWithModel]; else the top-level "model" field of its JSON body
// (body when the transport buffered it, else read through GetBody); else a Gemini /models/{model}:verb or an Azure
// /openai/deployments/{name}/ path segment; else "".
func requestModel(req *http.Request, body []byte) string {
	if m, ok := req.Context().Value(modelKey{}).(string); ok {
		return m
	}
	// TODO(model): body scan and paths.
	return ""
}
