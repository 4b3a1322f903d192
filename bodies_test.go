package llmtransport

import "github.com/llmtransport/llmtransport/internal/workload"

// bigChatBody returns a JSON chat request of about size bytes, dense with
// decoy "model" keys and strings, whose top-level "model" is its last key
// (see workload.DenseChatBody).
func bigChatBody(size int, model string) []byte { return workload.DenseChatBody(size, model) }

// chatBodyOfSize returns a JSON chat request of about size bytes shaped like
// the ones SDKs send, "model" last (see workload.ProseChatBody).
func chatBodyOfSize(size int, model string) []byte { return workload.ProseChatBody(size, model) }
