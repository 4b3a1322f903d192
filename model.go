package llmtransport

import (
	"context"

	"github.com/llmtransport/llmtransport/internal/reqmodel"
)

// ContextWithModel returns a copy of ctx that names the model of the requests
// sent with it. The model keys the circuit breaker, the cooldown and the span
// names; naming it explicitly spares the transport from looking for it in the
// request body or path. An empty model puts the requests on their host's
// circuit.
//
// Without it, the model is read from the request: a Gemini or Vertex
// …/models/{model}:verb path, an Azure /openai/deployments/{name}/ path, the
// top-level "model" of a JSON body (scanned, not decoded, and never read from
// the request's own Body), else a model= query parameter.
func ContextWithModel(ctx context.Context, model string) context.Context {
	return reqmodel.NewContext(ctx, model)
}
