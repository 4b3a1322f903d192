package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// printTable prints the one markdown table: a row per measure, a column per
// client; bare in absolute figures, the others as a ratio (or a difference)
// to bare with the absolute figure in brackets.
func printTable(w io.Writer, rounds int, segment time.Duration, pairs [][][]pair, burst, paced []int) {
	fmt.Fprintf(w, "%s/%s, %d CPUs, %s; %d interleaved rounds, each client's segment next to one of bare's (~%v); medians. "+
		"At c=64, wall time / request is elapsed time / requests.\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), rounds, segment)

	head := []string{"measure"}
	for _, c := range clients {
		head = append(head, c.name)
	}
	row(w, head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	sep[0] = ":--"
	row(w, sep)

	for wi, wl := range workloads {
		p := pairs[wi]
		timeRow(w, wl.name+": client CPU / request", p, func(x sample) float64 { return float64(x.cpu) })
		timeRow(w, wl.name+": wall time / request", p, func(x sample) float64 { return float64(x.wall) })
		countRow(w, wl.name+": allocations / request", p, func(x sample) float64 { return x.allocs }, fmtCount)
		countRow(w, wl.name+": bytes allocated / request", p, func(x sample) float64 { return x.bytes }, fmtBytes)
	}
	if burst != nil {
		attemptsRow(w, "dead upstream, 200 calls at once: upstream attempts", burst)
		attemptsRow(w, "dead upstream, 200 calls one by one: upstream attempts", paced)
	}
}

func row(w io.Writer, cells []string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// bareValues returns f of every bare sample of the workload.
func bareValues(p [][]pair, f func(sample) float64) []float64 {
	var v []float64
	for _, ps := range p[1:] {
		for _, x := range ps {
			v = append(v, f(x.bare))
		}
	}
	return v
}

// timeRow prints bare's median and everyone else's median ratio to its
// neighbouring bare segment.
func timeRow(w io.Writer, name string, p [][]pair, f func(sample) float64) {
	cells := []string{name, fmtDur(median(bareValues(p, f)))}
	for _, ps := range p[1:] {
		ratios := make([]float64, len(ps))
		abs := make([]float64, len(ps))
		for r, x := range ps {
			ratios[r] = f(x.x) / f(x.bare)
			abs[r] = f(x.x)
		}
		cells = append(cells, fmt.Sprintf("%.2f× (%s)", median(ratios), fmtDur(median(abs))))
	}
	row(w, cells)
}

// countRow prints bare's median and everyone else's difference to it.
func countRow(w io.Writer, name string, p [][]pair, f func(sample) float64, format func(float64) string) {
	bare := median(bareValues(p, f))
	cells := []string{name, format(bare)}
	for _, ps := range p[1:] {
		abs := make([]float64, len(ps))
		for r, x := range ps {
			abs[r] = f(x.x)
		}
		v := median(abs)
		sign, d := "+", v-bare
		if d < 0 {
			sign, d = "−", -d
		}
		cells = append(cells, fmt.Sprintf("%s%s (%s)", sign, format(d), format(v)))
	}
	row(w, cells)
}

func attemptsRow(w io.Writer, name string, n []int) {
	cells := []string{name}
	for _, v := range n {
		cells = append(cells, fmt.Sprint(v))
	}
	row(w, cells)
}

func fmtDur(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func fmtCount(x float64) string { return fmt.Sprintf("%.0f", x) }

func fmtBytes(x float64) string {
	switch {
	case x >= 1<<20:
		return fmt.Sprintf("%.2f MiB", x/(1<<20))
	case x >= 1<<10:
		return fmt.Sprintf("%.1f KiB", x/(1<<10))
	}
	return fmt.Sprintf("%.0f B", x)
}
