package main

// The demo's chat client: a few dozen lines of net/http and encoding/json in
// place of openai-go, whose compile alone takes ~45 s and 2.6 GB on a fresh
// machine. Its retry loop copies openai-go v3.96.0's
// (internal/requestconfig/requestconfig.go: Execute, shouldRetry,
// retryDelay, parseRetryAfterHeader), so that "SDK alone" behaves as
// openai-go with its defaults does. llmtransport with the real openai-go
// is proven in integration/ (TestSDKGiveUpOnce, TestSDKRecovers,
// TestSDKTransportErrorsNeedMaxRetries0, TestSDKCircuitOpen,
// TestSDKFallbackAnswers, Example_openaiGo).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// openai-go v3.96.0's retry defaults.
const (
	sdkMaxRetries       = 2               // requestconfig.NewRequestConfig: MaxRetries: 2
	sdkMaxBackoff       = 8 * time.Second // DefaultMaxServerDelay: the cap of its own backoff
	sdkMaxRetryAfter    = 2 * time.Minute // defaultMaxRetryAfterDelay: a longer hint stops retrying
	sdkInitialBackoff   = 500 * time.Millisecond
	callHeader          = "X-Demo-Call" // names the call an attempt belongs to, for the gateway's log
	errorBodyReadLimit  = 64 << 10
	streamLineReadLimit = 1 << 20
)

// sdk is a minimal OpenAI chat client that retries as openai-go does.
type sdk struct {
	baseURL    string // ends in /v1
	httpClient *http.Client
	maxRetries int // openai-go's option.WithMaxRetries
}

// apiError is a response of status 400 or more, as openai-go's *openai.Error
// carries it.
type apiError struct {
	StatusCode int
	Body       []byte
	Response   *http.Response
}

func (e *apiError) Error() string {
	return fmt.Sprintf("POST %s: %d %s", e.Response.Request.URL, e.StatusCode, bytes.TrimSpace(e.Body))
}

// streamError is an error event inside a 200 stream, as openai-go's
// *ssestream.StreamError.
type streamError struct{ data string }

func (e *streamError) Error() string { return "received error while streaming: " + e.data }

// chat sends one chat completion (streamed or not) and returns the
// assistant's text. callID goes in the X-Demo-Call header of every attempt.
func (c *sdk) chat(ctx context.Context, model string, stream bool, callID string) (string, error) {
	body, err := json.Marshal(map[string]any{
		"model":    model,
		"stream":   stream,
		"messages": []map[string]string{{"role": "user", "content": "Say hello"}},
	})
	if err != nil {
		return "", err
	}
	res, err := c.execute(ctx, body, callID)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if stream {
		return readStream(res.Body)
	}
	var cc struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(res.Body).Decode(&cc); err != nil {
		return "", err
	}
	if len(cc.Choices) == 0 {
		return "", nil // openai-go too returns a ChatCompletion without choices
	}
	return cc.Choices[0].Message.Content, nil
}

// execute is openai-go's RequestConfig.Execute, reduced to what the demo
// uses: up to 1 + maxRetries attempts, the last response (or error) back.
func (c *sdk) execute(ctx context.Context, body []byte, callID string) (*http.Response, error) {
	var (
		res *http.Response
		err error
	)
	for retryCount := 0; retryCount <= c.maxRetries; retryCount++ {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/chat/completions", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer sk-demo")
		req.Header.Set("X-Stainless-Retry-Count", strconv.Itoa(retryCount))
		req.Header.Set(callHeader, callID)
		res, err = c.httpClient.Do(req)
		if ctx.Err() != nil {
			if res != nil {
				res.Body.Close()
			}
			return nil, ctx.Err()
		}
		if !shouldRetry(res, err) || retryCount >= c.maxRetries {
			break
		}
		delay, retry := retryDelay(res, retryCount)
		if !retry {
			break // the server asked for a wait above the cap: its response goes back
		}
		if res != nil {
			res.Body.Close()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(res.Body, errorBodyReadLimit))
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(b))
		return nil, &apiError{StatusCode: res.StatusCode, Body: b, Response: res}
	}
	return res, nil
}

// shouldRetry is openai-go's: every transport error, then x-should-retry
// when the server sent it, else 408, 409, 429 and 5xx.
func shouldRetry(res *http.Response, err error) bool {
	if err != nil || res == nil {
		return true
	}
	switch res.Header.Get("x-should-retry") {
	case "true":
		return true
	case "false":
		return false
	}
	return res.StatusCode == http.StatusRequestTimeout ||
		res.StatusCode == http.StatusConflict ||
		res.StatusCode == http.StatusTooManyRequests ||
		res.StatusCode >= http.StatusInternalServerError
}

// retryDelay is openai-go's: Retry-After-Ms, else Retry-After (seconds or an
// HTTP date), when within 2 minutes (above: no retry); else 0.5 s × 2^n
// capped at 8 s, minus up to a quarter of jitter.
func retryDelay(res *http.Response, retryCount int) (time.Duration, bool) {
	if d, ok, exceeds := retryAfter(res); ok {
		return d, !exceeds
	}
	backoff := float64(sdkInitialBackoff) * math.Pow(2, float64(retryCount))
	delay := sdkMaxBackoff
	if backoff < float64(sdkMaxBackoff) {
		delay = time.Duration(backoff)
	}
	if jitter := int64(delay / 4); jitter > 0 {
		delay -= time.Duration(rand.Int64N(jitter))
	}
	return delay, true
}

// retryAfter is openai-go's parseRetryAfterHeader with its default cap.
func retryAfter(res *http.Response) (d time.Duration, ok, exceeds bool) {
	if res == nil {
		return 0, false, false
	}
	for _, h := range []struct {
		name string
		unit time.Duration
		date bool
	}{{"Retry-After-Ms", time.Millisecond, false}, {"Retry-After", time.Second, true}} {
		v := res.Header.Get(h.name)
		if v == "" {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if errors.Is(err, strconv.ErrRange) && math.IsInf(f, 1) {
			return 0, true, true
		}
		if err == nil {
			if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
				continue
			}
			limit := float64(sdkMaxRetryAfter) / float64(h.unit)
			if f > limit {
				return 0, true, true
			}
			return time.Duration(f * float64(h.unit)), true, false
		}
		if h.date {
			if t, err := time.Parse(time.RFC1123, v); err == nil {
				d := time.Until(t)
				switch {
				case d <= 0:
					return 0, true, false
				case d > sdkMaxRetryAfter:
					return 0, true, true
				}
				return d, true, false
			}
		}
	}
	return 0, false, false
}

// readStream reads a chat completion event stream as openai-go's
// ssestream does: the deltas' text until [DONE] or the end; an event whose
// data has an "error" key ends it with a *streamError.
func readStream(r io.Reader) (string, error) {
	var text strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), streamLineReadLimit)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		data = strings.TrimSpace(data)
		if strings.HasPrefix(data, "[DONE]") {
			return text.String(), nil
		}
		var ev struct {
			Error   json.RawMessage `json:"error"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return text.String(), err
		}
		if ev.Error != nil {
			return text.String(), &streamError{data: string(ev.Error)}
		}
		if len(ev.Choices) > 0 {
			text.WriteString(ev.Choices[0].Delta.Content)
		}
	}
	return text.String(), sc.Err()
}
