package llmtransport

import (
	"net/http"

	"github.com/llmtransport/llmtransport/classify"
)

// The transport's use of classification. The classifier itself is package
// [github.com/llmtransport/llmtransport/classify], which stands on its own;
// the names below keep it reachable from this package, so that code
// written against llmtransport.Classify and its types compiles unchanged.

// Class is what a response (or a transport error) means for a caller of an
// LLM API; see [classify.Class].
type Class = classify.Class

// Classification is what [Classify] learned from one response; see
// [classify.Classification]. Its Retryable is the server's verdict: the
// transport retries a Retryable response only when its RetryAfter is
// within [WithMaxRetryWait].
type Classification = classify.Classification

// The classes, as package classify defines them.
const (
	ClassSuccess           = classify.ClassSuccess
	ClassRateLimited       = classify.ClassRateLimited
	ClassQuotaExhausted    = classify.ClassQuotaExhausted
	ClassOverloaded        = classify.ClassOverloaded
	ClassUpstreamTransient = classify.ClassUpstreamTransient
	ClassTimeout           = classify.ClassTimeout
	ClassAuth              = classify.ClassAuth
	ClassPermission        = classify.ClassPermission
	ClassInvalidRequest    = classify.ClassInvalidRequest
	ClassContextLength     = classify.ClassContextLength
	ClassContentFiltered   = classify.ClassContentFiltered
	ClassModelNotFound     = classify.ClassModelNotFound
	ClassNotFound          = classify.ClassNotFound
	ClassGatewayInternal   = classify.ClassGatewayInternal
	ClassUnknown           = classify.ClassUnknown
)

// Classify classifies resp, whose body (possibly truncated, possibly nil)
// the caller has already read into body; it is [classify.Classify], the
// default classifier of a [Transport] (see [WithClassifier]). Run again on a
// response a Transport handed back after its retries, it reports Retryable
// false: the transport set X-Should-Retry: false on it, for the SDKs above.
// [OutcomeOf] gives the transport's classification, with the server's
// verdict.
func Classify(resp *http.Response, body []byte) Classification {
	return classify.Classify(resp, body)
}

// maxPeek is how many bytes of an error body the transport reads before
// classifying it: all that the classifier looks at.
const maxPeek = classify.MaxPeek
