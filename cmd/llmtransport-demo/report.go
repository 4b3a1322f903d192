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

// report prints the summary of a run.
func report(w io.Writer, res *results) {
	for _, c := range []*client{res.with, res.without} {
		title := c.name + " (openai-go retries off; the transport retries, honours wait hints and opens circuits)"
		if !c.transport {
			title = c.name + " (openai-go's default retries: 2, backoff 0.5–8 s, Retry-After honoured)"
		}
		fmt.Fprintf(w, "\n== %s ==\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if c.transport {
			fmt.Fprintln(tw, "MODEL\tCALLS\tANSWERED\tUPSTREAM\tRETRIES\tHINTS HONOURED\tCIRCUIT REFUSED\tFALLBACKS\tCIRCUIT STATES\tP50\tP95\tCLASSES SEEN (retried and final)")
		} else {
			fmt.Fprintln(tw, "MODEL\tCALLS\tANSWERED\tUPSTREAM\tP50\tP95\tFINAL FAILURES")
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
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%v\t%v\t%s\n", name, m.calls, m.rate(), m.upstream, m.retries,
					hints, m.refused, fb, states(m.circuit), ms(m.percentile(0.5)), ms(m.percentile(0.95)), counts(m.classes))
			} else {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%v\t%v\t%s\n", name, m.calls, m.rate(), m.upstream,
					ms(m.percentile(0.5)), ms(m.percentile(0.95)), counts(m.classes))
			}
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\n== overall ==")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range []*client{res.with, res.without} {
		t := c.totals()
		perCall := 0.0
		if t.calls > 0 {
			perCall = float64(t.upstream) / float64(t.calls)
		}
		silent := ""
		if t.silent > 0 {
			silent = fmt.Sprintf(" (%d \"successes\" were errors inside a 200)", t.silent)
		}
		if n := c.skipped.Load(); n > 0 {
			silent += fmt.Sprintf(" (%d calls skipped: too many in flight)", n)
		}
		if t.fallbacks > 0 {
			silent += fmt.Sprintf(" (%d calls answered or tried by a fallback model)", t.fallbacks)
		}
		fmt.Fprintf(tw, "%s:\t%d calls,\t%s answered,\t%d upstream requests (%.2f per call),\tp95 %v%s\n",
			c.name, t.calls, t.rate(), t.upstream, perCall, ms(t.percentile(0.95)), silent)
	}
	tw.Flush()
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
