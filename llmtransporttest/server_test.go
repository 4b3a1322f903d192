package llmtransporttest_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llmtransport/llmtransport/llmtransporttest"
)

func post(t *testing.T, s *llmtransporttest.Server, model string, stream bool) *http.Response {
	t.Helper()
	body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"stream":` + strconv.FormatBool(stream) + `}`
	resp, err := s.Client().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// events reads an event stream and returns the data of its events.
func events(t *testing.T, r io.Reader) ([]string, error) {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out, sc.Err()
}

// streamContent concatenates the delta contents of chunk events.
func streamContent(t *testing.T, data []string) string {
	t.Helper()
	var b strings.Builder
	for _, d := range data {
		if d == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(d), &c); err != nil {
			t.Fatalf("chunk %q: %v", d, err)
		}
		b.WriteString(c.Choices[0].Delta.Content)
	}
	return b.String()
}

func TestOK(t *testing.T) {
	s := llmtransporttest.NewServer()
	defer s.Close()

	resp := post(t, s, "m", false)
	var c struct {
		Object  string
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || c.Object != "chat.completion" || c.Choices[0].Message.Content != llmtransporttest.DefaultReply {
		t.Errorf("got %d %q %q, want 200 chat.completion %q", resp.StatusCode, c.Object, c.Choices[0].Message.Content, llmtransporttest.DefaultReply)
	}
	if id := resp.Header.Get("X-Request-Id"); id != "req_000001" {
		t.Errorf("got x-request-id %q, want req_000001", id)
	}

	resp = post(t, s, "m", true)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("got Content-Type %q, want text/event-stream", ct)
	}
	data, err := events(t, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := streamContent(t, data); got != llmtransporttest.DefaultReply {
		t.Errorf("got streamed content %q, want %q", got, llmtransporttest.DefaultReply)
	}
	if data[len(data)-1] != "[DONE]" {
		t.Errorf("got last event %q, want [DONE]", data[len(data)-1])
	}
	if got := s.FaultCount("ok"); got != 2 {
		t.Errorf("got FaultCount(ok) = %d, want 2", got)
	}
}

func TestScriptAndCounters(t *testing.T) {
	s := llmtransporttest.NewServer(
		llmtransporttest.WithScript("flaky",
			llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error: do request failed"),
			llmtransporttest.Overloaded()),
		llmtransporttest.WithModel("dead", func(int) llmtransporttest.Fault { return llmtransporttest.BadGatewayHTML() }),
	)
	defer s.Close()

	var got []int
	for range 3 {
		got = append(got, post(t, s, "flaky", false).StatusCode)
	}
	for range 2 {
		got = append(got, post(t, s, "dead", false).StatusCode)
	}
	got = append(got, post(t, s, "other", false).StatusCode)
	if want := []int{500, 529, 200, 502, 502, 200}; !slices.Equal(got, want) {
		t.Errorf("got statuses %v, want %v", got, want)
	}
	st := s.Stats()
	if st.Total != 6 || st.ByModel["flaky"] != 3 || st.ByModel["dead"] != 2 || s.Requests("other") != 1 {
		t.Errorf("got %+v, want total 6, flaky 3, dead 2, other 1", st)
	}
	if st.ByFault["new_api:do_request_failed"] != 1 || st.ByFault["overloaded"] != 1 || st.ByFault["bad_gateway_html"] != 2 || st.ByFault["ok"] != 2 {
		t.Errorf("got ByFault %v", st.ByFault)
	}
	log := s.Log()
	if len(log) != 6 || log[0].Model != "flaky" || log[0].Fault != "new_api:do_request_failed" || log[0].RequestID != "req_000001" {
		t.Errorf("got log[0] %+v", log[0])
	}
}

func TestFaultShapes(t *testing.T) {
	tests := []struct {
		fault   llmtransporttest.Fault
		name    string
		status  int
		header  string // name=value that must be present ("" for none)
		bodyHas []string
	}{
		{fault: llmtransporttest.NewAPIError(503, "model_not_found", "No available channel for model m"),
			name: "new_api:model_not_found", status: 503, header: "X-Oneapi-Request-Id=req_000001",
			bodyHas: []string{`"type":"new_api_error"`, `"code":"model_not_found"`, `(request id: req_000001)`}},
		{fault: llmtransporttest.FlatError(400, "task_not_exist", "task_not_exist"),
			name: "flat:task_not_exist", status: 400, bodyHas: []string{`"code":"task_not_exist"`, `"data":null`}},
		{fault: llmtransporttest.OpenAIError(500, "server_error", "", "The server had an error"),
			name: "openai_error:500", status: 500, bodyHas: []string{`"code":null`, `"type":"server_error"`}},
		{fault: llmtransporttest.RateLimited(llmtransporttest.RetryAfterSeconds, 1500*time.Millisecond),
			name: "rate_limited:retry-after", status: 429, header: "Retry-After=2", bodyHas: []string{`"code":"rate_limit_exceeded"`}},
		{fault: llmtransporttest.RateLimited(llmtransporttest.RetryAfterMs, 250*time.Millisecond),
			name: "rate_limited:retry-after-ms", status: 429, header: "Retry-After-Ms=250"},
		{fault: llmtransporttest.RateLimited(llmtransporttest.ResetTokens, 1500*time.Millisecond),
			name: "rate_limited:x-ratelimit-reset-tokens", status: 429, header: "X-Ratelimit-Reset-Tokens=1.5s"},
		{fault: llmtransporttest.RateLimited(llmtransporttest.BodyRetryDelay, 1500*time.Millisecond),
			name: "rate_limited:body-retry-delay", status: 429, bodyHas: []string{`"retryDelay":"1.5s"`, `"status":"RESOURCE_EXHAUSTED"`, `google.rpc.RetryInfo`}},
		{fault: llmtransporttest.RateLimited(llmtransporttest.MessageText, 1500*time.Millisecond),
			name: "rate_limited:message", status: 429, bodyHas: []string{`Please try again in 1.5s.`}},
		{fault: llmtransporttest.RateLimited(llmtransporttest.NoHint, time.Second),
			name: "rate_limited:none", status: 429},
		{fault: llmtransporttest.InsufficientQuota(),
			name: "insufficient_quota", status: 429, bodyHas: []string{`"code":"insufficient_quota"`, `"type":"insufficient_quota"`}},
		{fault: llmtransporttest.Overloaded(),
			name: "overloaded", status: 529, header: "Request-Id=req_000001", bodyHas: []string{`{"error":{"message":"Overloaded","type":"overloaded_error"},"type":"error"}`}},
		{fault: llmtransporttest.BadGatewayHTML(),
			name: "bad_gateway_html", status: 502, header: "Content-Type=text/html", bodyHas: []string{"<h1>502 Bad Gateway</h1>"}},
		{fault: llmtransporttest.Response(418, http.Header{"X-Teapot": {"yes"}}, `short and stout`),
			name: "status:418", status: 418, header: "X-Teapot=yes", bodyHas: []string{"short and stout"}},
		{fault: llmtransporttest.ErrorFirstStream(),
			name: "error_first_stream", status: 200, bodyHas: []string{`{"error":{`, `do_request_failed`}},
		{fault: llmtransporttest.Delay(time.Millisecond, llmtransporttest.Overloaded()),
			name: "slow:overloaded", status: 529},
		{fault: llmtransporttest.Fault{}, name: "ok", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fault.Name(); got != tt.name {
				t.Errorf("got Name() %q, want %q", got, tt.name)
			}
			s := llmtransporttest.NewServer(llmtransporttest.WithScript("m", tt.fault))
			defer s.Close()
			resp := post(t, s, "m", false)
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("got status %d, want %d", resp.StatusCode, tt.status)
			}
			if resp.Header.Get("X-Request-Id") != "req_000001" {
				t.Errorf("got x-request-id %q, want req_000001", resp.Header.Get("X-Request-Id"))
			}
			if k, v, ok := strings.Cut(tt.header, "="); ok && resp.Header.Get(k) != v {
				t.Errorf("got header %s %q, want %q", k, resp.Header.Get(k), v)
			}
			for _, want := range tt.bodyHas {
				if !strings.Contains(string(body), want) {
					t.Errorf("body %s does not contain %s", body, want)
				}
			}
			if s.FaultCount(tt.name) != 1 {
				t.Errorf("got FaultCount(%q) = %d, want 1", tt.name, s.FaultCount(tt.name))
			}
		})
	}
}

func TestRetryAfterDate(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithScript("m", llmtransporttest.RateLimited(llmtransporttest.RetryAfterDate, 3*time.Second)))
	defer s.Close()
	before := time.Now()
	resp := post(t, s, "m", false)
	at, err := http.ParseTime(resp.Header.Get("Retry-After"))
	if err != nil {
		t.Fatalf("Retry-After %q: %v", resp.Header.Get("Retry-After"), err)
	}
	// The date is rounded up to a whole second, so it lies in [now+3s, now+4s].
	if d := at.Sub(before.Truncate(time.Second)); d < 3*time.Second || d > 5*time.Second {
		t.Errorf("got Retry-After %v after the request, want about 3s", d)
	}
}

func TestResetBeforeHeaders(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithScript("m", llmtransporttest.ResetBeforeHeaders()))
	defer s.Close()
	resp, err := s.Client().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m"}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a transport error", resp.StatusCode)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Errorf("got %v, want connection reset or EOF", err)
	}
	if s.FaultCount("reset_before_headers") != 1 {
		t.Errorf("got FaultCount = %d, want 1", s.FaultCount("reset_before_headers"))
	}
}

func TestBrokenBodies(t *testing.T) {
	tests := []struct {
		fault  llmtransporttest.Fault
		stream bool
	}{
		{llmtransporttest.ResetAfterHeaders(), false},
		{llmtransporttest.ResetAfterHeaders(), true},
		{llmtransporttest.TruncatedBody(), false},
		{llmtransporttest.TruncatedBody(), true},
		{llmtransporttest.MidStreamError(3), false},
	}
	for _, tt := range tests {
		t.Run(tt.fault.Name()+"/stream="+strconv.FormatBool(tt.stream), func(t *testing.T) {
			s := llmtransporttest.NewServer(llmtransporttest.WithScript("m", tt.fault))
			defer s.Close()
			resp := post(t, s, "m", tt.stream)
			if resp.StatusCode != 200 {
				t.Errorf("got status %d, want 200", resp.StatusCode)
			}
			if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("got body error %v, want unexpected EOF", err)
			}
		})
	}
}

func TestStreamErrors(t *testing.T) {
	s := llmtransporttest.NewServer(
		llmtransporttest.WithReply("one two three four"),
		llmtransporttest.WithScript("mid", llmtransporttest.MidStreamError(3)),
		llmtransporttest.WithScript("first", llmtransporttest.ErrorFirstStream()),
	)
	defer s.Close()

	data, err := events(t, post(t, s, "mid", true).Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 4 || !strings.HasPrefix(data[3], `{"error":{`) {
		t.Fatalf("got events %q, want 3 chunks then an error", data)
	}
	if got := streamContent(t, data[:3]); got != "one two " {
		t.Errorf("got content before the error %q, want %q", got, "one two ")
	}

	resp := post(t, s, "first", true)
	data, err = events(t, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(data) != 2 || !strings.HasPrefix(data[0], `{"error":{`) || data[1] != "[DONE]" {
		t.Errorf("got %d %q, want 200, an error event and [DONE]", resp.StatusCode, data)
	}
}

func TestCloseEndsSlowAnswers(t *testing.T) {
	arrived := make(chan struct{})
	s := llmtransporttest.NewServer(llmtransporttest.WithModel("slow", func(int) llmtransporttest.Fault {
		close(arrived)
		return llmtransporttest.Delay(time.Hour, llmtransporttest.OK())
	}))
	errc := make(chan error, 1)
	go func() {
		resp, err := s.Client().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"slow"}`))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	s.Close() // must not wait an hour
	if err := <-errc; err == nil {
		t.Error("got a response from a closed server, want an error")
	}
}

func TestRandom(t *testing.T) {
	names := func(script func(int) llmtransporttest.Fault) []string {
		var out []string
		for n := range 200 {
			out = append(out, script(n).Name())
		}
		return out
	}
	a, b := names(llmtransporttest.Random(0.3, 7)), names(llmtransporttest.Random(0.3, 7))
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different sequences")
	}
	faults := 0
	for _, n := range a {
		if n != "ok" {
			faults++
		}
	}
	if faults < 30 || faults > 90 {
		t.Errorf("got %d faults in 200 at rate 0.3, want about 60", faults)
	}
	for _, n := range names(llmtransporttest.Random(1, 1, llmtransporttest.Overloaded())) {
		if n != "overloaded" {
			t.Fatalf("got %q at rate 1, want only overloaded", n)
		}
	}
	for _, n := range names(llmtransporttest.Random(0, 1)) {
		if n != "ok" {
			t.Fatalf("got %q at rate 0, want only ok", n)
		}
	}
}

func TestFaultRateAppliesToUnscriptedModels(t *testing.T) {
	s := llmtransporttest.NewServer(
		llmtransporttest.WithFaultRate(1, 1, llmtransporttest.Overloaded()),
		llmtransporttest.WithScript("pinned"),
	)
	defer s.Close()
	if got := post(t, s, "any", false).StatusCode; got != 529 {
		t.Errorf("unscripted model: got %d, want 529", got)
	}
	if got := post(t, s, "pinned", false).StatusCode; got != 200 {
		t.Errorf("scripted model: got %d, want 200", got)
	}
}

func TestModelsAndAuth(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithAPIKey("sk-test"), llmtransporttest.WithScript("b"), llmtransporttest.WithScript("a"))
	defer s.Close()
	resp, err := s.Client().Get(s.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Data []struct{ ID string } }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 2 || list.Data[0].ID != "a" || list.Data[1].ID != "b" {
		t.Errorf("got models %+v, want a, b", list.Data)
	}
	if got := post(t, s, "a", false).StatusCode; got != 401 {
		t.Errorf("without the key: got %d, want 401", got)
	}
	req, _ := http.NewRequest("POST", s.URL+"/v1/chat/completions", strings.NewReader(`{"model":"a"}`))
	req.Header.Set("Authorization", "Bearer sk-test")
	resp, err = s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with the key: got %d, want 200", resp.StatusCode)
	}
}

func TestLogRecordsBodies(t *testing.T) {
	tests := []struct {
		fault  llmtransporttest.Fault
		stream bool
		status int // 0: no response
	}{
		{llmtransporttest.OK(), false, 200},
		{llmtransporttest.OK(), true, 200},
		{llmtransporttest.NewAPIError(500, "do_request_failed", "upstream error"), false, 500},
		{llmtransporttest.BadGatewayHTML(), true, 502},
		{llmtransporttest.ErrorFirstStream(), true, 200},
		{llmtransporttest.MidStreamError(2), true, 200},
		{llmtransporttest.TruncatedBody(), false, 200},
		{llmtransporttest.TruncatedBody(), true, 200},
		{llmtransporttest.ResetAfterHeaders(), false, 200},
		{llmtransporttest.ResetBeforeHeaders(), false, 0},
		{llmtransporttest.GarbageHeaders(200, 0), false, 200},
		{llmtransporttest.GarbageHeaders(503, 1000), false, 503},
		{llmtransporttest.Handler("empty", func(http.ResponseWriter, *http.Request) {}), false, 200},
	}
	for _, tt := range tests {
		t.Run(tt.fault.Name()+"/stream="+strconv.FormatBool(tt.stream), func(t *testing.T) {
			s := llmtransporttest.NewServer(llmtransporttest.WithScript("m", tt.fault))
			body := `{"model":"m","stream":` + strconv.FormatBool(tt.stream) + `,"nonce":"` + tt.fault.Name() + `"}`
			resp, err := s.Client().Post(s.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			var got []byte
			if err == nil {
				got, _ = io.ReadAll(resp.Body) // a broken body ends in an error: got is what came before
				resp.Body.Close()
			}
			s.Close() // the log is complete once every answer is
			log := s.Log()
			if len(log) != 1 {
				t.Fatalf("got %d log entries, want 1", len(log))
			}
			r := log[0]
			if string(r.Body) != body {
				t.Errorf("got request body %q, want %q", r.Body, body)
			}
			if r.Status != tt.status {
				t.Errorf("got logged status %d, want %d", r.Status, tt.status)
			}
			if tt.status == 0 {
				if err == nil {
					t.Errorf("got status %d, want a transport error", resp.StatusCode)
				}
				if len(r.ResponseBody) != 0 {
					t.Errorf("got logged response body %q, want none", r.ResponseBody)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || string(got) != string(r.ResponseBody) {
				t.Errorf("client read %d %q, server logged %d %q", resp.StatusCode, got, r.Status, r.ResponseBody)
			}
		})
	}
}

func TestGarbageHeaders(t *testing.T) {
	s := llmtransporttest.NewServer(llmtransporttest.WithScript("m",
		llmtransporttest.GarbageHeaders(429, 0), llmtransporttest.GarbageHeaders(200, 2000)))
	defer s.Close()

	resp := post(t, s, "m", false)
	if resp.StatusCode != 429 {
		t.Errorf("got status %d, want 429", resp.StatusCode)
	}
	if got := resp.Header.Values("Retry-After"); !slices.Equal(got, []string{"soon", "99999999999"}) {
		t.Errorf("got Retry-After %q, want soon and 99999999999", got)
	}
	if got := resp.Header.Get("Retry-After-Ms"); got != "NaN" {
		t.Errorf("got retry-after-ms %q, want NaN", got)
	}

	resp = post(t, s, "m", false)
	var c struct {
		Choices []struct{ Message struct{ Content string } }
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(resp.Header.Get("X-Padding")) != 2000 || c.Choices[0].Message.Content != llmtransporttest.DefaultReply {
		t.Errorf("got %d, padding %d bytes, content %+v; want 200, 2000 bytes, a normal completion", resp.StatusCode, len(resp.Header.Get("X-Padding")), c)
	}
	if s.FaultCount("garbage_headers:429") != 1 || s.FaultCount("garbage_headers:200") != 1 {
		t.Errorf("got counts %v", s.Stats().ByFault)
	}
}

// TestCloseWaitsForHijackedAnswers: after Close, the log holds the status
// of every answer, those that break the connection included (httptest's
// Close does not wait for hijacked connections).
func TestCloseWaitsForHijackedAnswers(t *testing.T) {
	for range 20 {
		s := llmtransporttest.NewServer(llmtransporttest.WithModel("m", func(int) llmtransporttest.Fault {
			return llmtransporttest.ResetAfterHeaders()
		}))
		resp := post(t, s, "m", false)
		io.Copy(io.Discard, resp.Body)
		s.Close()
		if got := s.Log()[0].Status; got != 200 {
			t.Fatalf("got logged status %d after Close, want 200", got)
		}
	}
}
