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
func printTable(w io.Writer, rounds int, segment time.Duration, samples [][][]sample, burst, paced []int) {
	fmt.Fprintf(w, "%s/%s, %d CPUs, %s; %d interleaved rounds of ~%v per workload for bare; medians.\n\n",
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
		s := samples[wi]
		timeRow(w, wl.name+": client CPU / request", s, func(x sample) float64 { return float64(x.cpu) })
		timeRow(w, wl.name+": wall time / request", s, func(x sample) float64 { return float64(x.wall) })
		countRow(w, wl.name+": allocations / request", s, func(x sample) float64 { return x.allocs }, fmtCount)
		countRow(w, wl.name+": bytes allocated / request", s, func(x sample) float64 { return x.bytes }, fmtBytes)
	}
	if burst != nil {
		attemptsRow(w, "dead upstream, 200 calls at once: upstream attempts", burst)
		attemptsRow(w, "dead upstream, 200 calls one by one: upstream attempts", paced)
	}
}

func row(w io.Writer, cells []string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// timeRow prints bare's median and everyone else's median ratio to bare.
func timeRow(w io.Writer, name string, s [][]sample, f func(sample) float64) {
	cells := []string{name}
	bare := values(s[0], f)
	cells = append(cells, fmtDur(median(bare)))
	for i := 1; i < len(s); i++ {
		v := values(s[i], f)
		ratios := make([]float64, len(v))
		for r := range v {
			ratios[r] = v[r] / bare[r]
		}
		cells = append(cells, fmt.Sprintf("%.2f× (%s)", median(ratios), fmtDur(median(v))))
	}
	row(w, cells)
}

// countRow prints bare's median and everyone else's difference to it.
func countRow(w io.Writer, name string, s [][]sample, f func(sample) float64, format func(float64) string) {
	cells := []string{name}
	bare := median(values(s[0], f))
	cells = append(cells, format(bare))
	for i := 1; i < len(s); i++ {
		v := median(values(s[i], f))
		sign := "+"
		if v < bare {
			sign = "−"
		}
		d := v - bare
		if d < 0 {
			d = -d
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

// values returns f of each round's sample, in round order.
func values(s []sample, f func(sample) float64) []float64 {
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	return v
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
