package llmtransport

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/synctest"
)

// TestTransportRetriesTheCorpus runs the error responses of the classifier's
// corpus (classify/testdata) through a Transport with default settings and
// checks that it retries exactly those the corpus calls retryable. The
// corpus's "retryable" is what such a transport does: the classifier's
// verdict (Retryable, the server's) with a wait within the default cap. So
// this proves, through the transport, the cap that package classify no
// longer applies: a Retry-After of an hour, Azure's "retry after 86400
// seconds", are not retried. 2xx cases are left out: the transport judges
// a 2xx stream by its first event (the rest is watched as it passes, see
// streamwatch.go), where Classify, given the whole stream, judges it all.
func TestTransportRetriesTheCorpus(t *testing.T) {
	var cases []transportCorpusCase
	for _, name := range []string{"classify/testdata/gateway-errors.jsonl", "classify/testdata/gateway-errors-extra.jsonl"} {
		cases = append(cases, loadTransportCorpus(t, name)...)
	}
	ran := 0
	for _, cc := range cases {
		if cc.Status < 400 {
			continue
		}
		ran++
		t.Run(cc.ID, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeRT{respond: func(int, *http.Request) (*http.Response, error) { return cc.response(), nil }}
				tr := New(f, WithMaxRetries(1), WithoutCircuitBreaker(), WithoutCooldowns())
				resp, err := tr.RoundTrip(newChatRequest(t, t.Context(), "http://gw.test/v1/chat/completions"))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if retried := f.attempts() > 1; retried != cc.Expect.Retryable {
					t.Errorf("retried %v (%d attempts), corpus says retryable %v", retried, f.attempts(), cc.Expect.Retryable)
				}
			})
		})
	}
	if ran < 50 {
		t.Errorf("only %d error cases in the corpus", ran)
	}
}

// transportCorpusCase is what this test reads of a corpus line (the
// format is package classify's corpusCase).
type transportCorpusCase struct {
	ID          string            `json:"id"`
	Status      int               `json:"status"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	ContentType *string           `json:"content_type"`
	Expect      struct {
		Retryable bool `json:"retryable"`
	} `json:"expect"`
}

func (cc *transportCorpusCase) response() *http.Response {
	h := make(http.Header)
	for k, v := range cc.Headers {
		h.Add(k, v)
	}
	if cc.ContentType != nil && h.Get("Content-Type") == "" {
		h.Set("Content-Type", *cc.ContentType)
	}
	return &http.Response{
		StatusCode: cc.Status, Status: http.StatusText(cc.Status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(cc.Body)), ContentLength: int64(len(cc.Body)),
	}
}

func loadTransportCorpus(t *testing.T, name string) []transportCorpusCase {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []transportCorpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			var cc transportCorpusCase
			if err := json.Unmarshal([]byte(line), &cc); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			cases = append(cases, cc)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}
