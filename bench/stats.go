package main

import (
	"math"
	"sort"
	"time"
)

// Figure is one measured quantity over several runs.
type Figure struct {
	Section string    `json:"section"`
	Name    string    `json:"name"`
	Unit    string    `json:"unit"`
	Runs    []float64 `json:"runs,omitempty"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Ratio   bool      `json:"ratio,omitempty"` // a ratio of two other figures
	Err     string    `json:"error,omitempty"` // why the figure is missing
}

// ok reports whether the figure holds a measurement.
func (f *Figure) ok() bool { return f != nil && f.Err == "" && len(f.Runs) > 0 }

func newFigure(section, name, unit string, runs []float64) *Figure {
	f := &Figure{Section: section, Name: name, Unit: unit, Runs: runs}
	if len(runs) > 0 {
		f.Median, f.Min, f.Max = median(runs), minOf(runs), maxOf(runs)
	}
	return f
}

// ratioFigure is a/b: the ratio of the medians, with the range of the
// per-run ratios (run i of a over run i of b, taken in the same round).
func ratioFigure(section, name string, a, b *Figure) *Figure {
	f := &Figure{Section: section, Name: name, Unit: "×", Ratio: true}
	if !a.ok() || !b.ok() || b.Median == 0 {
		f.Err = "missing input"
		return f
	}
	n := min(len(a.Runs), len(b.Runs))
	for i := 0; i < n; i++ {
		if b.Runs[i] != 0 {
			f.Runs = append(f.Runs, a.Runs[i]/b.Runs[i])
		}
	}
	f.Median = a.Median / b.Median
	if len(f.Runs) > 0 {
		f.Min, f.Max = minOf(f.Runs), maxOf(f.Runs)
	}
	return f
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

// percentile returns the p-quantile (0 < p <= 1, nearest rank) of d in
// microseconds; d is sorted in place.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(math.Ceil(p*float64(len(d)))) - 1
	i = max(0, min(i, len(d)-1))
	return float64(d[i].Nanoseconds()) / 1e3
}
