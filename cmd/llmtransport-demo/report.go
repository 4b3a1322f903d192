package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// states shows a circuit's states in order, "closed" when it never changed,
// and the count of changes when there are many.
func states(s []string) string {
	switch {
	case len(s) == 0:
		return "closed"
	case len(s) > 6:
		return fmt.Sprintf("%s→…→%s (%d changes)", s[0], s[len(s)-1], len(s)-1)
	}
	return strings.Join(s, "→")
}

// report prints the summary of a run: the headline first, then the
// details per model, then a legend for every label.
func report(w io.Writer, res *results) {
	with, without := res.with.totals(), res.without.totals()
	fmt.Fprintf(w, "\n== Headline: the same calls against the same faults (%d and %d calls) ==\n", with.calls, without.calls)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tANSWERED\tUPSTREAM/CALL\tP50\tP95\tWASTED")
	for _, c := range []*client{res.with, res.without} {
		t := c.totals()
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%v\t%v\t%d\n", c.name, t.rate(), t.perCall(), ms(t.percentile(0.5)), ms(t.percentile(0.95)), t.wasted)
	}
	tw.Flush()
	fmt.Fprintf(w, "ANSWERED: calls that got the model's reply. UPSTREAM/CALL: requests the gateway received per call.\n")
	fmt.Fprintf(w, "P50, P95: call latency, retries and waits included. WASTED: requests sent after the same call got an answer\n")
	fmt.Fprintf(w, "no retry can change (here 429 insufficient_quota); each costs the prompt's tokens again.\n")
	fmt.Fprintf(w, "%s\n", tradeOff(with, without, res))
	for _, name := range models {
		a, b := res.with.models[name], res.without.models[name]
		if a.calls > 0 && b.calls > 0 && float64(a.ok)/float64(a.calls) < float64(b.ok)/float64(b.calls) {
			fmt.Fprintf(w, "Trade-off: on %s %s answered fewer calls than %s (%s vs %s)", name, res.with.name, res.without.name, a.rate(), b.rate())
			if res.budgetRatio > 0 {
				fmt.Fprintf(w, ": its retry budget (-retry-budget %.2f) refuses retries in a burst of failures, to spare an\n"+
					"upstream in trouble; -retry-budget 0 turns it off, at the cost of more upstream requests", res.budgetRatio)
			}
			fmt.Fprintln(w, ".")
		}
	}
	fmt.Fprintf(w, "%q emulates openai-go v3.96.0's default retries (2 retries, 0.5 s × 2^n backoff capped at 8 s with up to 25%% jitter,\n", res.without.name)
	fmt.Fprintf(w, "Retry-After / retry-after-ms honoured up to 2 min, x-should-retry obeyed, 408/409/429/5xx and connection errors retried);\n")
	fmt.Fprintf(w, "%q is the same client with its retries off over llmtransport, as the README's openai-go recipe says.\n", res.with.name)
	fmt.Fprintf(w, "The demo does not compile openai-go (it alone takes ~45 s and 2.6 GB to build); llmtransport with the real\n")
	fmt.Fprintf(w, "openai-go is proven in integration/ (TestSDKGiveUpOnce, TestSDKRecovers, TestSDKCircuitOpen, TestSDKFallbackAnswers).\n")

	for _, c := range []*client{res.with, res.without} {
		title := c.name + " (SDK retries off; the transport retries, honours wait hints, opens circuits, falls back)"
		if !c.transport {
			title = c.name + " (openai-go's default retries, emulated)"
		}
		fmt.Fprintf(w, "\n== %s, per model ==\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if c.transport {
			fmt.Fprintln(tw, "MODEL\tCALLS\tANSWERED\tUPSTREAM\tWASTED\tRETRIES\tHINTS HONOURED\tCIRCUIT REFUSED\tFALLBACKS\tCIRCUIT STATES\tP50\tP95\tCLASSES SEEN")
		} else {
			fmt.Fprintln(tw, "MODEL\tCALLS\tANSWERED\tUPSTREAM\tWASTED\tP50\tP95\tCLASSES SEEN")
		}
		for _, name := range models {
			m := c.models[name]
			if c.transport {
				hints := fmt.Sprintf("%d (%v)", m.hinted, m.hintedWait.Round(time.Millisecond))
				if m.hinted > 0 {
					hints += " " + counts(m.hintSources)
				}
				fb := "-"
				if m.fallbacks > 0 {
					fb = fmt.Sprintf("%d %s", m.fallbacks, counts(m.fallbackReasons))
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%v\t%v\t%s\n", name, m.calls, m.rate(), m.upstream, m.wasted, m.retries,
					hints, m.refused, fb, states(m.circuit), ms(m.percentile(0.5)), ms(m.percentile(0.95)), counts(m.classes))
			} else {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%v\t%v\t%s\n", name, m.calls, m.rate(), m.upstream, m.wasted,
					ms(m.percentile(0.5)), ms(m.percentile(0.95)), counts(m.classes))
			}
		}
		tw.Flush()
		var notes []string
		if t := c.totals(); t.silent > 0 {
			notes = append(notes, fmt.Sprintf("%d \"successes\" were errors inside a 200", t.silent))
		}
		if n := c.skipped.Load(); n > 0 {
			notes = append(notes, fmt.Sprintf("%d calls skipped: too many in flight", n))
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "(%s)\n", strings.Join(notes, "; "))
		}
	}
	fmt.Fprint(w, legend)
}

// legend explains every label of the per-model tables.
const legend = `
Legend of the per-model tables:
  CALLS            calls made for the model; ANSWERED the share that got the model's reply (from it or a fallback)
  UPSTREAM         requests the gateway received for the model (a fallback's go under the model that got them)
  WASTED           of them, requests sent after the same call got an answer no retry can change
  RETRIES          retries llmtransport made (the SDK alone's are UPSTREAM minus the calls that reached the gateway)
  HINTS HONOURED   retries that waited as the server asked, total wait, and where the hint was
                   (retry-after-ms, x-ratelimit-reset-*, Gemini retryDelay in the body, "try again in …" in the message, Retry-After)
  CIRCUIT REFUSED  calls refused by the model's open circuit without a request (then answered by a fallback, if any)
  FALLBACKS        calls sent on to the fallback model, by reason (circuit open, retries spent)
  CIRCUIT STATES   the model's circuit, in order of change (closed → open → half-open → closed …)
  P50, P95         call latency, retries and waits included
  CLASSES SEEN     what the failed attempts and calls were, as llmtransport.Classify names them (rate_limited,
                   quota_exhausted, overloaded, server_error…), and: circuit_open = refused by an open circuit;
                   error_in_200 = a 200 whose body was an error, which the SDK took for success; stream_error = an
                   error event inside a 200 stream; deadline = the call's 10 s timeout; transport_error = no response
                   (connection reset)
`

// tradeOff states what llmtransport costs in this run, if anything.
func tradeOff(with, without modelStats, res *results) string {
	p95w, p95o := ms(with.percentile(0.95)), ms(without.percentile(0.95))
	p50w, p50o := ms(with.percentile(0.5)), ms(without.percentile(0.5))
	// worse reports a difference above timing noise: 10 % and 5 ms.
	worse := func(a, b time.Duration) bool { return a > b+b/10 && a > b+5*time.Millisecond }
	switch {
	case worse(p95w, p95o):
		return fmt.Sprintf("Trade-off: %s's p95 is higher (%v vs %v): it waits out the rate-limited model's hints and\n"+
			"retries until it answers, where the SDK alone gives up or fails; the calls answered late are the slow tail.", res.with.name, p95w, p95o)
	case worse(p50w, p50o):
		return fmt.Sprintf("Trade-off: %s's p50 is higher (%v vs %v).", res.with.name, p50w, p50o)
	}
	return fmt.Sprintf("Trade-off: none in this run: p50 %v vs %v, p95 %v vs %v (within 10 %% or 5 ms counts as even).", p50w, p50o, p95w, p95o)
}

// perCall is the upstream requests per call.
func (m *modelStats) perCall() float64 {
	if m.calls == 0 {
		return 0
	}
	return float64(m.upstream) / float64(m.calls)
}

// counts formats a count map as "a×3 b×1", largest first.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
