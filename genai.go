package llmtransport

import (
	"net/url"
	"strings"
)

// operationName returns the GenAI operation (the gen_ai.operation.name
// attribute and the first word of the call's span name) that a request to
// path performs. Paths it does not know give "request".
func operationName(path string) string {
	// Gemini: /v1beta/models/{model}:verb.
	if i := strings.LastIndexByte(path, ':'); i >= 0 && strings.LastIndexByte(path, '/') < i {
		switch path[i+1:] {
		case "generateContent", "streamGenerateContent":
			return "generate_content"
		case "embedContent", "batchEmbedContents":
			return "embeddings"
		case "countTokens":
			return "count_tokens"
		}
		return "request"
	}
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return "chat"
	case strings.HasSuffix(path, "/completions"):
		return "text_completion"
	case strings.HasSuffix(path, "/embeddings"):
		return "embeddings"
	case strings.HasSuffix(path, "/responses"):
		// The OpenAI Responses API: a chat turn (the GenAI conventions
		// mark it with openai.api.type=responses).
		return "chat"
	case strings.HasSuffix(path, "/messages"):
		// Anthropic's Messages API.
		return "chat"
	case strings.HasSuffix(path, "/images/generations"):
		return "image_generation"
	case strings.HasSuffix(path, "/audio/transcriptions"):
		return "transcription"
	case strings.HasSuffix(path, "/audio/speech"):
		return "speech"
	case strings.HasSuffix(path, "/moderations"):
		return "moderation"
	case strings.HasSuffix(path, "/rerank"):
		return "rerank"
	}
	return "request"
}

// providerName returns the gen_ai.provider.name of the API at host (a host
// name without port), or "" when the host is not a known provider's: a
// gateway or a self-hosted server.
func providerName(host string) string {
	switch host {
	case "api.openai.com":
		return "openai"
	case "api.anthropic.com":
		return "anthropic"
	case "generativelanguage.googleapis.com":
		return "gcp.gemini"
	case "openrouter.ai":
		return "openrouter"
	case "api.groq.com":
		return "groq"
	case "api.mistral.ai":
		return "mistral_ai"
	case "api.deepseek.com":
		return "deepseek"
	case "api.x.ai":
		return "x_ai"
	case "api.perplexity.ai":
		return "perplexity"
	case "api.cohere.com", "api.cohere.ai":
		return "cohere"
	}
	switch {
	case strings.HasSuffix(host, ".openai.azure.com"):
		return "azure.ai.openai"
	case strings.HasSuffix(host, ".services.ai.azure.com"), strings.HasSuffix(host, ".inference.ai.azure.com"):
		return "azure.ai.inference"
	case strings.HasSuffix(host, "aiplatform.googleapis.com"):
		return "gcp.vertex_ai"
	case strings.HasPrefix(host, "bedrock-runtime.") && strings.HasSuffix(host, ".amazonaws.com"):
		return "aws.bedrock"
	}
	return ""
}

// serverAddrPort returns the server.address and server.port of u: the host
// name, and the port (the scheme's default when the URL names none).
func serverAddrPort(u *url.URL) (string, int) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			return host, 80
		default:
			return host, 443
		}
	}
	n := 0
	for _, c := range port {
		if c < '0' || c > '9' {
			return host, 0
		}
		n = n*10 + int(c-'0')
	}
	return host, n
}

// hostName strips the port from a URL host ("api.openai.com:443").
func hostName(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}
