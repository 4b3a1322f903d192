package classify

import (
	"net/http"
	"strings"

	"github.com/llmtransport/llmtransport/internal/wire"
)

// verdict is the outcome of the decision procedure: a class and, for the
// few codes whose handling differs from their class, overrides.
type verdict struct {
	class   Class
	retry   int8 // +1 retry, -1 do not, 0 as the class says
	breaker int8 // +1 counts against the circuit, -1 does not, 0 as the class says
	// own: the verdict rests on no error object but on the stream or a
	// finish reason, and names its own code and message (the body's
	// fields, such as an event's "type", are no error's).
	own  bool
	code string
	msg  string
}

// Codes and types (error.code, error.type, Google status, ErrorInfo.reason,
// details.error_code…) that decide a class on their own, in the order of
// gateway-errors.md §7.2. Matching ignores case.
var (
	quotaCodes = []string{
		"insufficient_quota", "credit_balance_exhausted", "organization_spend_limit_exceeded",
		"project_spend_limit_exceeded", "organization_usage_limit_exceeded", "insufficient_user_quota",
		"pre_consume_token_quota_failed", "quota_not_enough", "insufficient_balance",
		"enforced_spend_limit_reached", "billing_error", "billing_not_active", "budget_exceeded",
		"insufficient_credits",
	}
	contextCodes = []string{"context_length_exceeded", "model_context_window_exceeded"}
	contentCodes = []string{
		"content_filter", "content_filtered", "sensitive_words_detected", "prompt_blocked",
		"ResponsibleAIPolicyViolation", "content_policy_violation", "data_inspection_failed",
	}
	authCodes     = []string{"invalid_api_key", "authentication_error", "API_KEY_INVALID", "auth_error", "UNAUTHENTICATED"}
	modelCodes    = []string{"model_not_found", "model_price_error", "model_officially_unsupported", "NotFoundError", "DeploymentNotFound"}
	overloadCodes = []string{"overloaded_error", "server_is_overloaded", "MODEL_CAPACITY_EXHAUSTED", "provider_unavailable", "engine_overloaded"}
	// rateLimitCodes decide rate_limited whatever the status (an admin's
	// status_code_mapping can send a 429 as a 500), once quota signals and
	// "Request too large" have had their say. "requests" and "tokens" are
	// the types of OpenAI's 429s.
	rateLimitCodes = []string{
		"rate_limit_exceeded", "rate_limit_error", "rate_limited", "too_many_requests", "throttling_error",
		"ThrottlingException", "RESOURCE_EXHAUSTED", "rateLimitExceeded", "requests", "tokens",
	}
	timeoutCodes = []string{"DEADLINE_EXCEEDED", "timeout_error"}
)

// gatewayCodes are new-api / one-api codes (gateway-errors.md §2.2, §2.3)
// not covered by the lists above. channel:* codes are handled apart.
var gatewayCodes = map[string]verdict{
	"invalid_request":           {class: ClassInvalidRequest},
	"bad_request_body":          {class: ClassInvalidRequest},
	"read_request_body_failed":  {class: ClassInvalidRequest},
	"convert_request_failed":    {class: ClassInvalidRequest},
	"invalid_text_request":      {class: ClassInvalidRequest},
	"prompt_missing":            {class: ClassInvalidRequest},
	"size_not_supported":        {class: ClassInvalidRequest},
	"text_too_long":             {class: ClassInvalidRequest},
	"access_denied":             {class: ClassPermission},
	"invalid_api_type":          {class: ClassGatewayInternal, breaker: +1},
	"count_token_failed":        {class: ClassGatewayInternal},
	"json_marshal_failed":       {class: ClassGatewayInternal},
	"query_data_error":          {class: ClassGatewayInternal, retry: +1},
	"update_data_error":         {class: ClassGatewayInternal, retry: +1},
	"gen_relay_info_failed":     {class: ClassGatewayInternal, retry: +1},
	"get_user_quota_failed":     {class: ClassGatewayInternal, retry: +1},
	"get_channel_failed":        {class: ClassUpstreamTransient},
	"do_request_failed":         {class: ClassUpstreamTransient},
	"bad_response":              {class: ClassUpstreamTransient},
	"bad_response_body":         {class: ClassUpstreamTransient},
	"empty_response":            {class: ClassUpstreamTransient},
	"read_response_body_failed": {class: ClassUpstreamTransient},
	"task_not_exist":            {class: ClassNotFound},
	"task_not_found":            {class: ClassNotFound},
	// new-api's own load guard (503, "system cpu overloaded"): about the
	// gateway host, not the model, so retried with backoff and not
	// counted against the model's circuit (§2.5).
	"system_cpu_overloaded": {class: ClassOverloaded, breaker: -1},
}

// Message fragments (matched in lower case) for the text rules.
var (
	quotaPhrases = []string{
		"exceeded your current quota", "credit balance is too low", "reached your specified api usage limits",
		"reached your specified workspace api usage limits", "requires more credits", "usage limit reached",
		"quota exceeded", "quota is not enough", "out of credits", "per-day",
		"额度不足", "额度已用尽", "余额不足", "已欠费",
	}
	contextPhrases = []string{
		"maximum context length", "context length", "too many tokens", "prompt is too long",
		"context window", "context limit", "exceeds the maximum number of tokens", "contextwindowexceeded",
	}
	contentPhrases = []string{
		"content management policy", "content policy", "safety system", "requires moderation",
		"content filter", "flagged by",
	}
	authPhrases = []string{
		"api key not valid", "invalid api key", "incorrect api key", "invalid x-api-key",
		"api key expired", "invalid authentication",
	}
	modelMissingPhrases = []string{"does not exist", "not exist", "not found", "no such model", "unknown model", "invalid model"}
	noChannelPhrases    = []string{"无可用渠道", "no available channel"}
	overloadPhrases     = []string{
		"overloaded", "high demand", "capacity exceeded", "no deployments available", "at capacity",
		"capacity exhausted",
	}
	transientPhrases = []string{
		"internal", "server error", "unavailable", "timeout", "timed out", "temporar", "try again later",
		"upstream", "connection", "died",
	}
	googlePerDayPhrases = []string{"perday", "per_day", "per day"}
)

// nameStatus maps error types, codes and Google statuses to the HTTP
// status they stand for, to classify errors found inside 2xx responses.
var nameStatus = map[string]int{
	"rate_limit_error": 429, "rate_limit_exceeded": 429, "rate_limited": 429, "resource_exhausted": 429,
	"tokens": 429, "requests": 429, "throttling_error": 429,
	"authentication_error": 401, "invalid_api_key": 401, "unauthenticated": 401,
	"permission_error": 403, "permission_denied": 403,
	"not_found_error": 404, "not_found": 404, "notfounderror": 404,
	"invalid_request_error": 400, "badrequesterror": 400, "invalid_argument": 400, "invalid_prompt": 400,
	"failed_precondition": 400,
	"request_too_large":   413,
	"billing_error":       402,
	"api_error":           500, "server_error": 500, "internalservererror": 500, "internal": 500,
	"internal_error": 500, "internal_server_error": 500, "bad_response_status_code": 500,
	"overloaded_error": 529, "server_is_overloaded": 529,
	"unavailable": 503, "service_unavailable": 503,
	"timeout_error": 504, "deadline_exceeded": 504,
}

// classifier holds what the decision procedure looks at.
type classifier struct {
	bi    bodyInfo
	h     http.Header
	eff   int        // the effective status: the HTTP status, or the inner one of an in-band error
	text  string     // all message text, lower case
	codes [12]string // every code-like string of the error
	n     int        // codes in use
	msgs  [6]string  // message texts, for request IDs
	nm    int
}

func (c *classifier) addCode(s string) {
	if s != "" && c.n < len(c.codes) {
		c.codes[c.n] = s
		c.n++
	}
}

// hasCode reports whether any code of the error is in list.
func (c *classifier) hasCode(list []string) bool {
	for _, s := range c.codes[:c.n] {
		for _, l := range list {
			if strings.EqualFold(s, l) {
				return true
			}
		}
	}
	return false
}

// hasText reports whether the message text contains any of phrases.
func (c *classifier) hasText(phrases []string) bool {
	for _, p := range phrases {
		if strings.Contains(c.text, p) {
			return true
		}
	}
	return false
}

// err returns the error object that describes the body.
func (c *classifier) err() *errFields { return c.bi.container() }

// init gathers codes and text from the parsed body.
func (c *classifier) init(h http.Header, status int) {
	c.h, c.eff = h, status
	bi := &c.bi
	e := bi.container()
	for _, f := range [...]*errFields{e, &bi.nested} {
		c.addCode(f.detailsCode)
		c.addCode(f.code)
		c.addCode(f.typ)
		c.addCode(f.status)
		c.addCode(f.reason)
		c.addCode(f.errorsReason)
		c.addCode(f.errorType)
	}
	c.addCode(e.innerCode)
	if status >= 400 {
		c.eff = bodyStatus(e, &bi.nested, status)
	}
	if bi.description != "" {
		c.addCode(strings.TrimSpace(bi.description))
	}
	if e != &bi.top {
		c.addCode(bi.top.code)
	}
	for _, m := range [...]string{e.message, bi.nested.message, e.raw, bi.fallbackMessage(), bi.top.message} {
		if m != "" && c.nm < len(c.msgs) {
			c.msgs[c.nm] = m
			c.nm++
		}
	}
	var sb strings.Builder
	for _, m := range c.msgs[:c.nm] {
		sb.WriteString(m)
		sb.WriteByte('\n')
	}
	c.text = strings.ToLower(sb.String())
}

// decide runs the ordered procedure of gateway-errors.md §7.2 on a response
// whose body has been parsed into c.bi.
func (c *classifier) decide(resp *http.Response) verdict {
	status := resp.StatusCode
	c.init(resp.Header, status)
	bi := &c.bi
	if status >= 200 && status < 300 {
		switch {
		case bi.kind == bodySSENoEvent && bi.keepAlive:
			// Only keep-alives, then the end: the server never started.
			return verdict{class: ClassTimeout}
		case bi.kind == bodySSENoEvent:
			return verdict{class: ClassUpstreamTransient}
		case bi.inBandError():
			c.eff = c.inBandStatus()
		case bi.filterReason != "":
			return verdict{class: ClassContentFiltered, own: true, code: bi.filterReason}
		case strings.EqualFold(bi.finishReason, "content_filter") || bi.blockReason != "":
			return verdict{class: ClassContentFiltered}
		case bi.sse() && bi.streamEnded && !bi.streamFinished && !bi.streamContent && bi.keepAlive:
			// Keep-alives, then the end marker: the server never started.
			return verdict{class: ClassTimeout, own: true, msg: "stream ended without any event"}
		case bi.sse() && bi.streamEnded && !bi.streamFinished && (bi.streamKnown || !bi.streamContent):
			// new-api ends a stream cut by a reset or a stall, or an empty
			// one, with [DONE] like any other. Only a format that ends with
			// a finish reason (chat completion chunks, Anthropic, Gemini,
			// Responses) owes one: an Assistants stream, say, has none. A
			// stream with no event at all but [DONE] never started.
			return verdict{class: ClassUpstreamTransient, own: true, msg: "stream ended without a finish reason"}
		case bi.kind == bodyHTML || wire.HasPrefixFold(resp.Header.Get("Content-Type"), "text/html"):
			return verdict{class: ClassUnknown}
		default:
			return verdict{class: ClassSuccess}
		}
	}
	if v, ok := c.byCode(); ok {
		return v
	}
	if v, ok := c.byText(); ok {
		return v
	}
	return c.byStatus()
}

// googleQuota reports whether the error is a Google RESOURCE_EXHAUSTED
// quota error, whose "You exceeded your current quota" text is a rate limit
// unless the quota is per day or zero. Relayed by new-api, Gemini's error
// keeps only its message (status and details dropped, code 429): a message
// that names Google's docs, or that asks to retry in a while (OpenAI's
// billing quota, which shares its first sentence, does neither), is still
// Google's.
func (c *classifier) googleQuota() bool {
	e, n := c.err(), &c.bi.nested
	return strings.EqualFold(e.status, "RESOURCE_EXHAUSTED") || strings.EqualFold(n.status, "RESOURCE_EXHAUSTED") ||
		e.quotaFailure || n.quotaFailure ||
		strings.Contains(c.text, "quota exceeded for metric") || strings.Contains(c.text, "googleapis.com") ||
		strings.Contains(c.text, "ai.google.dev") ||
		strings.Contains(c.text, "exceeded your current quota") && strings.Contains(c.text, "please retry in")
}

// googleTerminal reports whether a Google quota error names a per-day
// quota or a limit of 0: the model cannot be used today on this key.
func (c *classifier) googleTerminal() bool {
	return c.err().perDay || c.bi.nested.perDay || c.hasText(googlePerDayPhrases) || hasZeroLimit(c.text)
}

// hasZeroLimit reports whether text says "limit: 0" (not "limit: 0.5" or
// "limit: 05").
func hasZeroLimit(text string) bool {
	for off := 0; ; {
		i := strings.Index(text[off:], "limit: 0")
		if i < 0 {
			return false
		}
		off += i + len("limit: 0")
		if off == len(text) || !(text[off] >= '0' && text[off] <= '9' || text[off] == '.') {
			return true
		}
	}
}

// byCode applies the rules that rest on codes, types, statuses and other
// structured fields.
func (c *classifier) byCode() (verdict, bool) {
	e := c.err()
	switch {
	case c.hasCode(quotaCodes):
		return verdict{class: ClassQuotaExhausted}, true
	case c.eff == 402 && e.limitSource == "openrouter_in_flight_budget" && c.h.Get("Retry-After") != "":
		return verdict{class: ClassRateLimited}, true
	case c.eff == 402:
		return verdict{class: ClassQuotaExhausted}, true
	case c.googleQuota() && c.googleTerminal():
		// Its retryDelay (a per-minute delay) is still reported: the class
		// is never retried, so it only informs the caller.
		return verdict{class: ClassQuotaExhausted, breaker: +1}, true
	case strings.Contains(strings.ToLower(e.limitSource), "daily"):
		return verdict{class: ClassQuotaExhausted}, true
	case c.hasCode(contextCodes):
		return verdict{class: ClassContextLength}, true
	case c.hasCode(contentCodes) || e.flagged:
		return verdict{class: ClassContentFiltered}, true
	case c.hasCode(authCodes):
		return verdict{class: ClassAuth}, true
	case c.hasCode(modelCodes):
		return verdict{class: ClassModelNotFound}, true
	case c.hasCode(overloadCodes):
		return verdict{class: ClassOverloaded}, true
	}
	for _, s := range c.codes[:c.n] {
		if v, ok := gatewayCodes[strings.ToLower(s)]; ok {
			return v, true
		}
		if wire.HasPrefixFold(s, "channel:") {
			if strings.EqualFold(s, "channel:response_time_exceeded") {
				return verdict{class: ClassTimeout}, true
			}
			return verdict{class: ClassUpstreamTransient}, true
		}
		if strings.EqualFold(s, "bad_response_status_code") && c.eff < 400 {
			return verdict{class: ClassUpstreamTransient}, true
		}
	}
	if c.hasCode([]string{"FAILED_PRECONDITION"}) {
		return verdict{class: ClassPermission}, true
	}
	return verdict{}, false
}

// bodyStatus is the status that decides the status rules: the HTTP status,
// unless the error's numeric code (or the one quoted one level down) is a
// quota, rate-limit or overload status that the HTTP status was remapped
// from (new-api's status_code_mapping turns a 429 into a 500, body intact).
func bodyStatus(e, nested *errFields, status int) int {
	for _, f := range [...]*errFields{e, nested} {
		switch n := httpStatusCode(strings.TrimSpace(f.code)); n {
		case 402, 429, 529:
			return n
		}
	}
	return status
}

// byText applies the rules that rest on the message text, and the
// rate-limit codes, which only quota text and "Request too large" beat.
func (c *classifier) byText() (verdict, bool) {
	switch {
	case c.text == "":
	case c.googleQuota():
		// Google's quota text reads like a quota error even for
		// per-minute limits; only googleTerminal (in byCode) makes it one.
	case c.hasText(quotaPhrases) || hasInsufficient(c.text):
		return verdict{class: ClassQuotaExhausted}, true
	}
	switch {
	case strings.Contains(c.text, "request too large"):
		return verdict{class: ClassInvalidRequest}, true
	case c.hasCode(rateLimitCodes):
		return verdict{class: ClassRateLimited}, true
	case c.text == "":
		return verdict{}, false
	case c.eff != 429 && c.hasText(contextPhrases):
		return verdict{class: ClassContextLength}, true
	case c.hasText(contentPhrases):
		return verdict{class: ClassContentFiltered}, true
	case c.eff >= 400 && c.eff < 500 && c.hasText(authPhrases):
		return verdict{class: ClassAuth}, true
	case c.hasText(noChannelPhrases),
		strings.Contains(c.text, "model") && (c.eff == 404 || c.hasCode([]string{"not_found_error", "NOT_FOUND"}) ||
			c.hasText(modelMissingPhrases) && !c.clientErrorType()):
		return verdict{class: ClassModelNotFound}, true
	case c.hasText(overloadPhrases):
		return verdict{class: ClassOverloaded}, true
	}
	return verdict{}, false
}

// clientErrorType reports whether the error says explicitly, by its type,
// that the request was at fault (a 400 invalid_request_error, LiteLLM's
// BadRequestError): words in its message ("… not found", naming a model
// the request referred to) never override that.
func (c *classifier) clientErrorType() bool {
	t := c.err().typ
	return c.eff != 404 && (strings.EqualFold(t, "invalid_request_error") || strings.EqualFold(t, "BadRequestError") ||
		strings.EqualFold(t, "invalid_request"))
}

// hasInsufficient matches insufficient[\s_-]+(quota|balance|credit).
func hasInsufficient(text string) bool {
	for off := 0; ; {
		i := strings.Index(text[off:], "insufficient")
		if i < 0 {
			return false
		}
		off += i + len("insufficient")
		j := off
		for j < len(text) && (text[j] == ' ' || text[j] == '_' || text[j] == '-' || text[j] == '\t' || text[j] == '\n') {
			j++
		}
		if j > off {
			rest := text[j:]
			if strings.HasPrefix(rest, "quota") || strings.HasPrefix(rest, "balance") || strings.HasPrefix(rest, "credit") {
				return true
			}
		}
	}
}

// byStatus is the last step: the class from the (effective) status.
func (c *classifier) byStatus() verdict {
	switch {
	case c.hasCode(timeoutCodes):
		return verdict{class: ClassTimeout}
	case c.eff == 529:
		return verdict{class: ClassOverloaded}
	case c.eff == 401:
		return verdict{class: ClassAuth}
	}
	return verdict{class: statusClass(c.eff)}
}

// inBandStatus is the status an error inside a 2xx response stands for: its
// numeric code, else what its type or code means, else a guess from its
// message (a server fault, or a request the server refused).
func (c *classifier) inBandStatus() int {
	e := c.err()
	if n := httpStatusCode(e.code); n >= 400 {
		return n
	}
	for _, s := range c.codes[:c.n] {
		if n, ok := nameStatus[strings.ToLower(s)]; ok {
			return n
		}
	}
	if c.text == "" || c.hasText(transientPhrases) {
		return 500
	}
	return 400
}

// httpStatusCode returns code as an HTTP error status (100–599), or 0.
func httpStatusCode(code string) int {
	if len(code) != 3 {
		return 0
	}
	n := 0
	for i := 0; i < 3; i++ {
		if code[i] < '0' || code[i] > '9' {
			return 0
		}
		n = n*10 + int(code[i]-'0')
	}
	if n < 100 || n > 599 {
		return 0
	}
	return n
}

// genericType reports whether typ is a catch-all type that names no
// specific error, and so is no business code (it stays in
// [Classification.Type]): new-api's "new_api_error", one-api's
// "one_api_error" and their rebrands, Anthropic's "error" envelope marker,
// the "upstream_error" gateways put on relayed errors, OpenAI's
// "invalid_request_error" (any 4xx), and the Responses "response.failed"
// event type.
func genericType(typ string) bool {
	switch {
	case typ == "error", typ == "upstream_error", typ == "invalid_request_error", typ == "response.failed":
		return true
	case strings.HasSuffix(typ, "_api_error") && typ != "api_error":
		return true
	}
	return false
}

// wrapperCode reports whether code is a gateway's generic wrapper code
// that a code found one level down (OpenRouter metadata.raw, JSON quoted in
// the message) is more specific than: a bare HTTP status, new-api's
// "bad_response_status_code", or a generic type written as a code.
func wrapperCode(code string) bool {
	return code == "" || httpStatusCode(code) != 0 || strings.EqualFold(code, "bad_response_status_code") ||
		strings.EqualFold(code, "provider_error") || genericType(code)
}

// businessCode picks the most specific machine code of e, most specific
// first: Anthropic's details.error_code; error.code unless it is only an
// HTTP status; the type unless it is generic (genericType); Google's
// ErrorInfo details[].reason ("API_KEY_INVALID"), then its status
// ("INVALID_ARGUMENT"); OpenRouter's metadata.error_type; the legacy
// errors[].reason; "" when there is none. A flat Midjourney body
// (description set, numeric code) has its code in description. Values
// that stand for none ("<nil>", "null", "None") never got this far (see
// setCode).
func businessCode(e *errFields, description string) string {
	if e.detailsCode != "" {
		return e.detailsCode
	}
	if description != "" && e.codeNum {
		// Midjourney: a numeric code class, the real code in description.
		if d := strings.TrimSpace(description); d != "" && !strings.ContainsAny(d, " \t\n") {
			return d
		}
	}
	if code := strings.TrimSpace(e.code); code != "" && httpStatusCode(code) == 0 {
		return code
	}
	if e.typ != "" && !genericType(e.typ) {
		return e.typ
	}
	for _, s := range [...]string{e.reason, e.status, e.errorType, e.errorsReason} {
		if s != "" {
			return s
		}
	}
	return ""
}
