// Package metricread reads what a Prometheus registry holds, for the tests,
// benchmarks and demo that check what the controllers report (a metric is
// read from the registry the controller writes, never assumed). One reader,
// so every check sums series the same way.
package metricread

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Series is one series of a family: its label values in the order the
// family's labels sort, and its value (a counter's or gauge's; a histogram's
// in SampleCount and SampleSum).
type Series struct {
	Values      []string
	Value       float64
	SampleCount uint64
	SampleSum   float64
}

// Read returns the series of the family name; none when the registry has
// no such family (yet).
func Read(g prometheus.Gatherer, name string) ([]Series, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var out []Series
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			s := Series{Value: m.GetCounter().GetValue() + m.GetGauge().GetValue(),
				SampleCount: m.GetHistogram().GetSampleCount(), SampleSum: m.GetHistogram().GetSampleSum()}
			for _, l := range m.GetLabel() {
				s.Values = append(s.Values, l.GetValue())
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// Sum adds up the values of the series whose first label values are
// prefix (every series, without one).
func Sum(g prometheus.Gatherer, name string, prefix ...string) (float64, error) {
	series, err := Read(g, name)
	total := 0.0
	for _, s := range series {
		if len(s.Values) >= len(prefix) && slices.Equal(s.Values[:len(prefix)], prefix) {
			total += s.Value
		}
	}
	return total, err
}

// SumWith adds up the values of the series that have value among their
// label values.
func SumWith(g prometheus.Gatherer, name, value string) (float64, error) {
	series, err := Read(g, name)
	total := 0.0
	for _, s := range series {
		if slices.Contains(s.Values, value) {
			total += s.Value
		}
	}
	return total, err
}

// ByValues adds up the series by their label values joined with sep, e.g.
// API writes by "kind,operation".
func ByValues(g prometheus.Gatherer, name, sep string) (map[string]float64, error) {
	series, err := Read(g, name)
	out := map[string]float64{}
	for _, s := range series {
		out[strings.Join(s.Values, sep)] += s.Value
	}
	return out, err
}
