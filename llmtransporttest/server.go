// Package llmtransporttest provides a fake OpenAI-compatible LLM gateway for
// tests, in the spirit of [net/http/httptest].
//
// A [Server] listens on 127.0.0.1 and serves POST /v1/chat/completions (a
// JSON completion, or an event stream when the request has "stream":true)
// and GET /v1/models; Anthropic's POST /v1/messages (a JSON message, or its
// named event stream: message_start, ping, content_block_start and _delta
// and _stop, message_delta with its stop_reason, message_stop); and
// Gemini's POST /v1beta/models/{model}:generateContent and
// :streamGenerateContent (?alt=sse for an event stream). Each model, read
// from the request body (for Gemini, its path), follows its
// own script of [Fault] values: normal answers, error bodies in the shapes
// real gateways and providers send (new-api envelopes, flat codes, 429s with
// every kind of wait hint, Anthropic's 529 and 429 with its
// anthropic-ratelimit-* headers, Gemini's RESOURCE_EXHAUSTED with its
// retryDelay, UNAVAILABLE and INVALID_ARGUMENT, nginx's HTML 502), connections
// reset before or after the headers, slow headers, garbage headers, and
// event streams that fail before or after their first chunk. Every response
// carries an x-request-id header. The server counts requests per model and
// per fault, so tests can assert how many attempts a client made, and logs
// each request's body and the status and body it answered with, so they can
// check that what a client read is what was sent. With [WithRateLimit] it
// enforces a window limit of requests and tokens per model and sends
// OpenAI's x-ratelimit-* headers, and a 429 when a window is used up.
//
// The package uses only the standard library.
package llmtransporttest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a fake OpenAI-compatible gateway made by [NewServer]. Point a
// client at URL + "/v1". It is safe for concurrent use.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:port, with no trailing
	// slash.
	URL string

	srv       *httptest.Server
	cfg       config
	done      chan struct{}
	closeOnce sync.Once
	// handlers counts the chat handlers running, hijacked ones included,
	// which httptest.Server.Close does not wait for.
	handlers sync.WaitGroup

	// mu guards everything below, and the scripts of cfg.
	mu      sync.Mutex
	seq     int
	byModel map[string]int
	byFault map[string]int
	log     []Request
	start   time.Time          // when the first window of cfg.limit began
	windows map[string]*window // per model, with cfg.limit
}

// Request is the record of one request the server answered: a chat
// completion, an Anthropic message or a Gemini generateContent.
type Request struct {
	// Path is the request's URL path, such as "/v1/chat/completions",
	// "/v1/messages" or "/v1beta/models/gemini-2.5-flash:generateContent".
	Path string
	// Model is the "model" of the request body, or for Gemini the model
	// of the path.
	Model string
	// Stream reports whether the request asked for an event stream (for
	// Gemini: whether it called :streamGenerateContent).
	Stream bool
	// Fault is the name of the fault that answered it ("ok" for success).
	Fault string
	// RequestID is the x-request-id the server sent back.
	RequestID string
	// Header is a copy of the request's headers.
	Header http.Header
	// Time is when the request arrived.
	Time time.Time
	// Body is the request body as the server received it (up to 8 MiB).
	Body []byte
	// Status is the status code the server sent, or 0 when it sent none
	// (the connection was reset before the headers).
	Status int
	// ResponseBody is the response body the server wrote, exactly as a
	// client reads it; for an answer broken on purpose, the part written
	// before the break. Status and ResponseBody are filled in once the
	// answer is complete: after [Server.Close], they are for every request.
	ResponseBody []byte
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	// Total is the number of requests received: chat completions,
	// Anthropic messages and Gemini generateContent calls (not GET
	// /v1/models).
	Total int
	// ByModel counts them per model.
	ByModel map[string]int
	// ByFault counts them per fault name ([Fault.Name]).
	ByFault map[string]int
}

// Option configures a [Server]; each documents its default.
type Option func(*config)

type config struct {
	scripts    map[string]func(int) Fault
	fallback   func(int) Fault
	reply      string
	latency    time.Duration
	chunkDelay time.Duration
	apiKey     string
	limit      *RateLimit
}

// WithScript makes model answer its requests with faults, one each, in
// order; once they are used up it answers [OK]. For example
// WithScript("m", NewAPIError(500, "do_request_failed", "…"), OK()) fails
// once and then succeeds. By default every model answers OK.
func WithScript(model string, faults ...Fault) Option {
	faults = slices.Clone(faults)
	return WithModel(model, func(n int) Fault {
		if n < len(faults) {
			return faults[n]
		}
		return OK()
	})
}

// WithModel makes model answer its request number n (from 0) with
// script(n). The server calls script under its lock, one request at a time,
// so script need not be safe for concurrent use. Use it for "always fails"
// (func(int) Fault { return f }), for patterns, or with [Random]. By default
// every model answers OK.
func WithModel(model string, script func(n int) Fault) Option {
	return func(c *config) {
		if script != nil {
			c.scripts[model] = script
		}
	}
}

// WithFaultRate makes every model without a script of its own fail with
// probability rate, with a fault picked from faults (from [Mix] when faults
// is empty), reproducibly for a given seed; see [Random]. The default rate
// is 0.
func WithFaultRate(rate float64, seed uint64, faults ...Fault) Option {
	return func(c *config) { c.fallback = Random(rate, seed, faults...) }
}

// WithReply sets the content of successful completions. Streams send it one
// word per chunk. The default is "Hello from the fake gateway.".
func WithReply(text string) Option {
	return func(c *config) { c.reply = text }
}

// WithLatency delays every answer (success or fault) by d before its
// headers, to make timings look real. The default is 0.
func WithLatency(d time.Duration) Option {
	return func(c *config) { c.latency = max(d, 0) }
}

// WithChunkDelay waits d between the chunk events of a stream. The default
// is 0.
func WithChunkDelay(d time.Duration) Option {
	return func(c *config) { c.chunkDelay = max(d, 0) }
}

// WithAPIKey makes the server require "Authorization: Bearer <key>" and
// answer 401 invalid_api_key without it. By default any key, or none, is
// accepted.
func WithAPIKey(key string) Option {
	return func(c *config) { c.apiKey = key }
}

// DefaultReply is the content of successful completions unless [WithReply]
// sets another.
const DefaultReply = "Hello from the fake gateway."

// NewServer starts a Server on a random port of 127.0.0.1. The caller must
// call [Server.Close] when done.
func NewServer(opts ...Option) *Server {
	s := &Server{
		cfg:     config{scripts: map[string]func(int) Fault{}, reply: DefaultReply},
		done:    make(chan struct{}),
		byModel: map[string]int{},
		byFault: map[string]int{},
		windows: map[string]*window{},
	}
	for _, o := range opts {
		if o != nil {
			o(&s.cfg)
		}
	}
	s.start = time.Now()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	return s
}

// Close stops the server: slow answers in progress end at once, and Close
// returns once every handler has returned.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.handlers.Wait()
	})
}

// Client returns an [net/http.Client] for the server, with a transport of
// its own: wrap its Transport to test a middleware.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Total returns how many requests the server has received (see [Stats].Total).
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// Requests returns how many requests asked for model (in their body, or
// for Gemini in their path).
func (s *Server) Requests(model string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byModel[model]
}

// FaultCount returns how many requests were answered by the fault named
// name ([Fault.Name]); FaultCount("ok") counts successes.
func (s *Server) FaultCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byFault[name]
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Total: s.seq, ByModel: maps.Clone(s.byModel), ByFault: maps.Clone(s.byFault)}
}

// Log returns the records of the requests received so far (see [Stats].Total),
// oldest first.
func (s *Server) Log() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if model, stream, ok := geminiPath(r); ok {
		s.serveAPI(w, r, apiGemini, model, stream)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	switch {
	case path == "/chat/completions" && r.Method == http.MethodPost:
		s.serveAPI(w, r, apiChat, "", false)
	case path == "/messages" && r.Method == http.MethodPost:
		s.serveAPI(w, r, apiAnthropic, "", false)
	case path == "/models" && r.Method == http.MethodGet:
		s.serveModels(w, r)
	default:
		w.Header().Set("X-Request-Id", "req_notfound")
		writeJSON(w, http.StatusNotFound, openAIEnvelope("Invalid URL ("+r.Method+" "+r.URL.Path+")", "invalid_request_error", ""))
	}
}

// chatRequest is the part of a request the server reads (an Anthropic message request has the same fields).
type chatRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Content any `json:"content"`
	} `json:"messages"`

	// Read for the token cost of WithRateLimit, as written: a value of
	// any type is accepted (and counts as 0 unless it is a number).
	MaxTokens           json.RawMessage `json:"max_tokens"`
	MaxCompletionTokens json.RawMessage `json:"max_completion_tokens"`
	MaxOutputTokens     json.RawMessage `json:"max_output_tokens"`
	N                   json.RawMessage `json:"n"`
}

// serveAPI answers a request of api: a chat completion, an Anthropic
// message, or a Gemini generateContent, whose model and stream are those of
// its path (Gemini) or of its body.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, api apiKind, model string, stream bool) {
	s.handlers.Add(1)
	defer s.handlers.Done()
	var req chatRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if api == apiGemini {
		req.Model, req.Stream = model, stream
	}
	now := time.Now()
	s.mu.Lock()
	n := s.byModel[req.Model]
	s.byModel[req.Model]++
	s.seq++
	id := fmt.Sprintf("req_%06d", s.seq)
	var f Fault
	var limitHeader http.Header
	limited := false
	if err == nil && s.cfg.limit != nil && (s.cfg.apiKey == "" || hasKey(r, api, s.cfg.apiKey)) {
		var ok bool
		limitHeader, ok = s.admit(req.Model, tokenCost(len(body), &req), now)
		limited = !ok
	}
	switch {
	case err != nil:
		f = badJSON(api)
	case s.cfg.apiKey != "" && !hasKey(r, api, s.cfg.apiKey):
		f = badKey(api)
	case limited:
		f = windowLimited(limitHeader)
	case s.cfg.scripts[req.Model] != nil:
		f = s.cfg.scripts[req.Model](n)
	case s.cfg.fallback != nil:
		f = s.cfg.fallback(n)
	}
	s.byFault[f.Name()]++
	entry := len(s.log)
	s.log = append(s.log, Request{Path: r.URL.Path, Model: req.Model, Stream: req.Stream, Fault: f.Name(), RequestID: id, Header: r.Header.Clone(), Time: now, Body: body})
	s.mu.Unlock()

	rec := &recorder{ResponseWriter: w}
	defer func() {
		if rec.status == 0 && !rec.hijacked {
			rec.status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		s.mu.Lock()
		s.log[entry].Status, s.log[entry].ResponseBody = rec.status, rec.body
		s.mu.Unlock()
	}()
	x := &exchange{s: s, r: r, api: api, model: req.Model, stream: req.Stream, requestID: id}
	if !s.wait(r, s.cfg.latency+f.delay) {
		hijackClose(rec, true)
		return
	}
	rec.Header().Set("X-Request-Id", id)
	if api == apiAnthropic {
		rec.Header().Set("Request-Id", id)
	}
	for k, v := range limitHeader {
		rec.Header()[k] = v
	}
	serve := f.serve
	if serve == nil {
		serve = serveOK
	}
	serve(rec, x)
}

// recorder is the ResponseWriter faults write to: it keeps the status and a
// copy of the body for the server's log, and passes everything on.
type recorder struct {
	http.ResponseWriter
	status   int
	body     []byte
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, p...)
	return r.ResponseWriter.Write(p)
}

// Flush and Hijack are what faults use of the underlying writer.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	r.hijacked = true
	return hj.Hijack()
}

// Unwrap lets an [net/http.ResponseController] reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// wait waits for d, or until the client goes away or the server closes; it
// reports whether the whole wait passed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

func (s *Server) serveModels(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := slices.Collect(maps.Keys(s.cfg.scripts))
	for m := range s.byModel {
		if m != "" && s.cfg.scripts[m] == nil {
			names = append(names, m)
		}
	}
	s.mu.Unlock()
	if len(names) == 0 {
		names = []string{"gpt-4o-mini"}
	}
	slices.Sort(names)
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, n := range names {
		list.Data = append(list.Data, model{ID: n, Object: "model", Created: 1700000000, OwnedBy: "llmtransporttest"})
	}
	w.Header().Set("X-Request-Id", "req_models")
	writeJSON(w, http.StatusOK, list)
}

// serveOK answers with a successful completion, streamed or not, in the
// shape of the request's API.
func serveOK(w http.ResponseWriter, x *exchange) {
	if x.api == apiGemini && x.stream && x.r.URL.Query().Get("alt") != "sse" {
		b := geminiArray(x.s.chunks(x))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(b)
		return
	}
	if !x.stream {
		b := x.s.completion(x)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b)
		return
	}
	setSSEHeaders(w)
	w.WriteHeader(http.StatusOK)
	writeEvents(w, x, x.s.chunks(x))
	if x.api == apiChat {
		writeEvent(w, []byte("[DONE]"))
	}
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// completion returns the JSON answer of x: a chat.completion, an Anthropic
// message or a Gemini GenerateContentResponse.
func (s *Server) completion(x *exchange) []byte {
	switch x.api {
	case apiAnthropic:
		return s.anthropicMessage(x)
	case apiGemini:
		return s.geminiResponse(x)
	}
	words := len(strings.Fields(s.cfg.reply))
	return mustJSON(map[string]any{
		"id":      "chatcmpl-" + x.requestID,
		"object":  "chat.completion",
		"created": time.Now().Unix(),
		"model":   x.model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": s.cfg.reply},
			"finish_reason": "stop",
		}},
		"usage": usage{PromptTokens: 8, CompletionTokens: words, TotalTokens: 8 + words},
	})
}

// chunks returns the events of x's stream. For a chat completion: one
// with the role, one per word of the reply, and one with the finish reason.
// For Anthropic and Gemini, see anthropicEvents and geminiChunks.
func (s *Server) chunks(x *exchange) []event {
	switch x.api {
	case apiAnthropic:
		return s.anthropicEvents(x)
	case apiGemini:
		return s.geminiChunks(x)
	}
	created := time.Now().Unix()
	chunk := func(delta map[string]any, finish any) []byte {
		return mustJSON(map[string]any{
			"id":      "chatcmpl-" + x.requestID,
			"object":  "chat.completion.chunk",
			"created": created,
			"model":   x.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
	}
	out := []event{{data: chunk(map[string]any{"role": "assistant", "content": ""}, nil)}}
	for _, w := range s.words() {
		out = append(out, event{data: chunk(map[string]any{"content": w}, nil)})
	}
	return append(out, event{data: chunk(map[string]any{}, "stop")})
}
