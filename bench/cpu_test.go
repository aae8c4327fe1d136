package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// userHZ is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU times
// (100 on every Linux architecture the project builds for).
const userHZ = 100

// cpuTimes is the CPU time (user + system) of this process and of each of
// its children by command name (envtest's etcd and kube-apiserver), read
// from /proc: the profile of a phase is the difference of two readings.
func cpuTimes() map[string]time.Duration {
	out := map[string]time.Duration{}
	self := os.Getpid()
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15): comm may hold
		// spaces, so split after its closing parenthesis.
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm, fields := s[open+1:closing], strings.Fields(s[closing+1:])
		if len(fields) < 13 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(fields[1])
		if pid != self && ppid != self {
			continue
		}
		if pid == self {
			comm = "bench (controller, clients)"
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		out[comm] += time.Duration(utime+stime) * time.Second / userHZ
	}
	return out
}

// cpuSince renders the CPU time spent since a reading, by process, and the
// share of the wall time it is, largest first.
func cpuSince(before map[string]time.Duration, wall time.Duration) string {
	type use struct {
		name string
		d    time.Duration
	}
	var uses []use
	for name, d := range cpuTimes() {
		if spent := d - before[name]; spent > 0 {
			uses = append(uses, use{name, spent})
		}
	}
	slices.SortFunc(uses, func(a, b use) int { return int(b.d - a.d) })
	var parts []string
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.1f s (%.0f%% of a core)", u.name, u.d.Seconds(), 100*u.d.Seconds()/wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// apiRequests is the API server's apiserver_request_total by verb and
// resource (from its /metrics): with cpuTimes, where a phase's time goes.
func apiRequests(cfg *rest.Config) (map[string]float64, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		out[labels["verb"]+" "+labels["resource"]] += m.GetCounter().GetValue()
	}
	return out, nil
}

// requestsSince renders the API requests since a reading, the most first,
// those over 1% of the total.
func requestsSince(cfg *rest.Config, before map[string]float64) string {
	now, err := apiRequests(cfg)
	if err != nil {
		return "(API server metrics: " + err.Error() + ")"
	}
	type req struct {
		what string
		n    float64
	}
	var reqs []req
	total := 0.0
	for what, n := range now {
		if d := n - before[what]; d > 0 {
			reqs = append(reqs, req{what, d})
			total += d
		}
	}
	slices.SortFunc(reqs, func(a, b req) int { return int(b.n - a.n) })
	parts := []string{fmt.Sprintf("%.0f requests", total)}
	for _, r := range reqs {
		if r.n >= total/100 {
			parts = append(parts, fmt.Sprintf("%s %.0f", r.what, r.n))
		}
	}
	return strings.Join(parts, ", ")
}
