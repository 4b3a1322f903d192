package classify

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// corpusCase is one line of testdata/gateway-errors.jsonl.
type corpusCase struct {
	ID          string            `json:"id"`
	Source      string            `json:"source"`
	Status      int               `json:"status"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	ContentType *string           `json:"content_type"`
	Expect      struct {
		Class     string  `json:"class"`
		Retryable bool    `json:"retryable"`
		Breaker   bool    `json:"breaker"`
		WaitHint  *string `json:"wait_hint"`
		RequestID *string `json:"request_id"`
		Code      *string `json:"code"`
	} `json:"expect"`
}

func (cc *corpusCase) response() *http.Response {
	h := make(http.Header)
	for k, v := range cc.Headers {
		h.Add(k, v)
	}
	if cc.ContentType != nil && h.Get("Content-Type") == "" {
		h.Set("Content-Type", *cc.ContentType)
	}
	return &http.Response{StatusCode: cc.Status, Header: h}
}

// corpusFiles are the corpus files: the shared corpus, and the cases of
// live gateways and whole streams added with the rules that need them.
var corpusFiles = []string{"testdata/gateway-errors.jsonl", "testdata/gateway-errors-extra.jsonl"}

func loadCorpus(tb testing.TB) []corpusCase {
	tb.Helper()
	var cases []corpusCase
	for _, name := range corpusFiles {
		cases = append(cases, loadCorpusFile(tb, name)...)
	}
	return cases
}

func loadCorpusFile(tb testing.TB, name string) []corpusCase {
	tb.Helper()
	f, err := os.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var cases []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var cc corpusCase
		if err := json.Unmarshal([]byte(line), &cc); err != nil {
			tb.Fatalf("%s line %d: %v", name, len(cases)+1, err)
		}
		cases = append(cases, cc)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(cases) == 0 {
		tb.Fatalf("empty corpus %s", name)
	}
	return cases
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// corpusCap is the cap on waits that the corpus's "retryable" assumes:
// llmtransport.DefaultMaxRetryWait, openai-python's 120 s.
const corpusCap = 120 * time.Second

// TestClassifyCorpus runs every case of the corpus and checks class,
// retryable, breaker, wait hint, request ID and code.
func TestClassifyCorpus(t *testing.T) {
	counts := map[string]int{}
	for _, cc := range loadCorpus(t) {
		t.Run(cc.ID, func(t *testing.T) {
			got := Classify(cc.response(), []byte(cc.Body))
			want := cc.Expect
			counts[want.Class]++
			if got.Class.String() != want.Class {
				t.Errorf("class = %v, want %v (%+v)", got.Class, want.Class, got)
			}
			// The corpus's "retryable" is what a transport with default
			// settings does (gateway-errors.md, the corpus format): the
			// server's verdict, and a wait within the default cap.
			if r := got.Retryable && got.RetryAfter <= corpusCap; r != want.Retryable {
				t.Errorf("retryable within %v = %v (Retryable %v, wait %v), want %v", corpusCap, r, got.Retryable, got.RetryAfter, want.Retryable)
			}
			if got.BreakerFailure != want.Breaker {
				t.Errorf("breaker = %v, want %v", got.BreakerFailure, want.Breaker)
			}
			var wantWait time.Duration
			if want.WaitHint != nil {
				d, err := time.ParseDuration(*want.WaitHint)
				if err != nil {
					t.Fatalf("bad wait_hint %q: %v", *want.WaitHint, err)
				}
				wantWait = d
			}
			if !closeTo(got.RetryAfter, wantWait) {
				t.Errorf("retry after = %v (from %q), want %v", got.RetryAfter, got.RetryAfterSource, wantWait)
			}
			if (got.RetryAfter == 0) != (got.RetryAfterSource == "") {
				t.Errorf("retry after = %v but source = %q", got.RetryAfter, got.RetryAfterSource)
			}
			if got.RequestID != str(want.RequestID) {
				t.Errorf("request id = %q, want %q", got.RequestID, str(want.RequestID))
			}
			if got.Code != str(want.Code) {
				t.Errorf("code = %q, want %q", got.Code, str(want.Code))
			}
			if got.Status != cc.Status {
				t.Errorf("status = %d, want %d", got.Status, cc.Status)
			}
		})
	}
	if testing.Verbose() {
		for c := range numClasses {
			if n := counts[c.String()]; n > 0 {
				t.Logf("%-20s %d", c, n)
			}
		}
	}
}

// closeTo reports whether got is within 1 ms or 0.1 % of want.
func closeTo(got, want time.Duration) bool {
	diff := got - want
	if diff < 0 {
		diff = -diff
	}
	return diff <= time.Millisecond || diff <= want/1000
}
