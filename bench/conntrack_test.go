package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ti-mo/conntrack"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/scenario"
)

// The benchmark table: documentation addresses, entries only (no traffic).
const (
	tableStale     = 10_000  // never NATed to the LB IP
	tableNATed     = 490_000 // to the LB IP, NATed to the endpoint
	tableUnrelated = 500_000 // UDP to other destinations
)

var (
	benchLB       = netip.MustParseAddr("203.0.113.10")
	benchEndpoint = netip.MustParseAddr("198.51.100.20")
)

// entry i of a kind: unique original and reply tuples.
func tableFlow(kind string, i int) conntrack.Flow {
	src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 256)})
	sport := uint16(1024 + i/256)
	switch kind {
	case "stale":
		return conntrack.NewFlow(17, 0, src, benchLB, sport+30000, 6343, 7200, 0)
	case "nated":
		f := conntrack.NewFlow(17, 0, src, benchLB, sport, 6343, 7200, 0)
		f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort = benchEndpoint, 16343
		return f
	default:
		dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(20 + i%200)})
		return conntrack.NewFlow(17, 0, src, dst, sport, 53, 7200, 0)
	}
}

// churnPort is the destination port of the entries bench/cmd/ctchurn
// creates and deletes to measure what conntrack events cost the agent.
const churnPort = 54

func fill(b *testing.B, ns int, kinds map[string]int) {
	b.Helper()
	type job struct {
		kind string
		i    int
	}
	jobs := make(chan job, 4096)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		c, err := conntrack.Dial(&netlink.Config{NetNS: ns})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for j := range jobs {
				if err := c.Create(tableFlow(j.kind, j.i)); err != nil {
					select {
					case errs <- fmt.Errorf("%s %d: %w", j.kind, j.i, err):
					default:
					}
				}
			}
		}()
	}
	for kind, n := range kinds {
		for i := 0; i < n; i++ {
			jobs <- job{kind, i}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// census counts the UDP entries and the stale ones.
func census(b *testing.B, ns int) (total, stale int) {
	b.Helper()
	n := &conntrackagent.Netlink{NetNS: ns, RecvBuffer: 8 << 20}
	if _, err := n.Scan(context.Background(), func(f conntrackagent.Flow) {
		total++
		if f.OrigDst.Addr() == benchLB && f.ReplySrc.Addr() == benchLB {
			stale++
		}
	}); err != nil {
		b.Fatal(err)
	}
	return total, stale
}

type toolRun struct {
	name    string
	seconds float64
	maxRSS  int // KiB
	out     string
	pass    float64 // the pass alone, when the tool says it ("PASS <seconds>")
}

// BenchmarkConntrackPass: a table of 1,000,000 UDP entries of which 10,000
// are stale, in a network namespace; the agent's pass, `conntrack -D`
// (conntrack-tools) and vishvananda/netlink's ConntrackDeleteFilters (the
// library kube-proxy uses) each delete the stale entries from an identical
// table, as separate processes measured by /usr/bin/time (wall time, peak
// RSS). The baselines get the simplest filter that finds the same entries
// (original destination and reply source both the LB IP); the agent decides
// from the Service and its endpoints. Needs root. Run with -benchtime=1x.
func BenchmarkConntrackPass(b *testing.B) {
	bin, name, ns := passBench(b)
	start := time.Now()
	fill(b, ns, map[string]int{"nated": tableNATed, "unrelated": tableUnrelated})
	b.Logf("filled 990,000 entries in %v", time.Since(start).Round(time.Millisecond))
	tools := []benchTool{
		{"agent pass", []string{filepath.Join(bin, "ctpass")}},
		{"agent targeted pass", []string{filepath.Join(bin, "ctpass"), "-targeted"}},
		{"conntrack -D", []string{"conntrack", "-D", "-p", "udp", "--orig-dst", benchLB.String(), "--reply-src", benchLB.String()}},
		{"vishvananda/netlink", []string{filepath.Join(bin, "ctfilter")}},
	}
	for n := 0; n < b.N; n++ {
		runs := runTools(b, name, ns, tools, tableStale, 1_000_000)
		for _, agent := range runs[:2] {
			for _, r := range runs[2:] {
				fmt.Fprintf(os.Stderr, "%s / %-20s time x%.2f, peak memory x%.2f\n", agent.name, r.name, agent.seconds/r.seconds, float64(agent.maxRSS)/float64(r.maxRSS))
				key := strings.Fields(agent.name)[1] + "-vs-" + strings.Fields(r.name)[0]
				b.ReportMetric(agent.seconds/r.seconds, "time-ratio-"+key)
				b.ReportMetric(float64(agent.maxRSS)/float64(r.maxRSS), "rss-ratio-"+key)
			}
		}
		b.ReportMetric(runs[0].seconds, "agent-s")
		b.ReportMetric(runs[1].seconds, "targeted-s")
		b.ReportMetric(float64(runs[0].maxRSS)/1024, "agent-MiB")
	}
}

// BenchmarkConntrackTargetedPass: the pass one Service's change triggers, in
// a table of 1,000,000 UDP entries of which that Service has 10,000 (1,000
// stale): the kernel sends only its entries, or (the running agent's way)
// the agent's index holds them. Against the full pass on an identical table
// (the periodic one). Needs root. Run with -benchtime=1x.
func BenchmarkConntrackTargetedPass(b *testing.B) {
	bin, name, ns := passBench(b)
	fill(b, ns, map[string]int{"nated": 9_000, "unrelated": 990_000})
	tools := []benchTool{
		{"agent pass", []string{filepath.Join(bin, "ctpass")}},
		{"agent targeted pass", []string{filepath.Join(bin, "ctpass"), "-targeted"}},
		{"agent indexed pass", []string{filepath.Join(bin, "ctpass"), "-indexed"}},
	}
	for n := 0; n < b.N; n++ {
		runs := runTools(b, name, ns, tools, 1_000, 1_000_000)
		full, targeted, indexed := runs[0].pass, runs[1].pass, runs[2].pass
		fmt.Fprintf(os.Stderr, "pass alone: full %.3f s, targeted (kernel filter) %.3f s (x%.3f), from the index %.4f s (x%.4f); the indexed process (index built, %d KiB peak RSS) %.2f s\n",
			full, targeted, targeted/full, indexed, indexed/full, runs[2].maxRSS, runs[2].seconds)
		b.ReportMetric(targeted/full, "time-ratio-targeted-vs-full")
		b.ReportMetric(indexed/full, "time-ratio-indexed-vs-full")
		b.ReportMetric(targeted, "targeted-s")
		b.ReportMetric(indexed*1000, "indexed-ms")
		b.ReportMetric(full, "full-s")
		b.ReportMetric(float64(runs[2].maxRSS)/1024, "indexed-process-MiB")
	}
}

type benchTool struct {
	name string
	cmd  []string
}

// passBench builds the pass commands and a network namespace with room for
// a million entries (nf_conntrack_max restored afterwards).
func passBench(b *testing.B) (bin, name string, ns int) {
	b.Helper()
	if err := netlab.Check(); err != nil {
		b.Fatal(err)
	}
	for _, tool := range []string{"conntrack", "/usr/bin/time"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found: apt-get install conntrack time", tool)
		}
	}
	bin = b.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./bench/cmd/ctpass", "./bench/cmd/ctfilter")
	build.Dir = localplane.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	name = "ctbench"
	_ = exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	nsf, err := os.Open("/run/netns/" + name)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nsf.Close() })
	const maxPath = "/proc/sys/net/netfilter/nf_conntrack_max"
	orig, err := os.ReadFile(maxPath)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(maxPath, []byte("1200000"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.WriteFile(maxPath, orig, 0o644) })
	return bin, name, int(nsf.Fd())
}

// runTools runs each tool on an identical table: the stale entries are
// re-created before each, counted before and after (all must go).
func runTools(b *testing.B, name string, ns int, tools []benchTool, stale, total int) []toolRun {
	b.Helper()
	var runs []toolRun
	for _, tool := range tools {
		fill(b, ns, map[string]int{"stale": stale})
		if got, gotStale := census(b, ns); got != total || gotStale != stale {
			b.Fatalf("table before %s: %d entries, %d stale", tool.name, got, gotStale)
		}
		args := append([]string{"netns", "exec", name, "/usr/bin/time", "-f", "TIME %e %M"}, tool.cmd...)
		cmd := exec.Command("ip", args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", tool.name, err, stderr.String())
		}
		run := toolRun{name: tool.name, out: lastLine(stdout.String() + stderr.String())}
		for _, line := range strings.Split(stderr.String(), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "TIME" {
				run.seconds, _ = strconv.ParseFloat(f[1], 64)
				run.maxRSS, _ = strconv.Atoi(f[2])
			} else if len(f) == 2 && f[0] == "PASS" {
				run.pass, _ = strconv.ParseFloat(f[1], 64)
			}
		}
		if got, gotStale := census(b, ns); got != total-stale || gotStale != 0 {
			b.Fatalf("after %s: %d entries, %d stale (want %d, 0)", tool.name, got, gotStale, total-stale)
		}
		runs = append(runs, run)
		fmt.Fprintf(os.Stderr, "%-20s %7.2f s  %8d KiB peak RSS   (%s)\n", run.name, run.seconds, run.maxRSS, run.out)
	}
	return runs
}

func lastLine(s string) string {
	lines := slices.DeleteFunc(strings.Split(strings.TrimSpace(s), "\n"), func(l string) bool {
		return strings.HasPrefix(l, "TIME ") || strings.HasPrefix(l, "PASS ") || strings.HasPrefix(l, "udp ")
	})
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// BenchmarkConntrackRecovery: the LB IP 0 -> 1 scenario of the end-to-end
// test, 20 times: the time from the EndpointSlice update (the API call
// returning) to the first packet at the pod, with the agent running against
// the local API server (default debounce). Needs root.
func BenchmarkConntrackRecovery(b *testing.B) {
	if err := netlab.Check(); err != nil {
		b.Fatal(err)
	}
	p := localplane.New(b, localplane.Options{NoAWS: true})
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	lab, err := netlab.New("ctrecov")
	if err != nil {
		b.Fatal(err)
	}
	defer lab.Close()
	flows := scenario.UDPService{Kube: kube, Namespace: "default", Name: "flows", Port: 6343, PodPort: 16343}
	svc, err := flows.Create(ctx)
	if err == nil {
		_, err = flows.AssignLB(ctx, svc, netlab.LBIP)
	}
	if err == nil {
		err = flows.Endpoints(ctx)
	}
	if err != nil {
		b.Fatal(err)
	}
	ct := &conntrackagent.Netlink{NetNS: lab.NodeNS(), Workers: 2}
	agent := conntrackagent.New(conntrackagent.Config{Client: kube, Conntrack: ct, NodeName: "node", Period: time.Hour, Debounce: 100 * time.Millisecond,
		TombstoneTTL: time.Minute, Recheck: 2 * time.Second, LocalAddrs: ct.LocalAddrs,
		Metrics: conntrackagent.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard()})
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(actx) }()
	defer func() { stop(); <-done }()

	lb, podAddr := netip.AddrPortFrom(netlab.LBIP, 6343), netip.AddrPortFrom(netlab.PodIP, 16343)
	pod, err := lab.Listen("pod", podAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer pod.Close()
	sender, err := lab.Send(40000, lb, 5*time.Millisecond) // 200 packets/s
	if err != nil {
		b.Fatal(err)
	}
	defer sender.Stop()

	const trials = 20
	for n := 0; n < b.N; n++ {
		var lat []time.Duration
		for trial := 0; trial < trials; trial++ {
			// Endpoints gone: kube-proxy drops its rule; entries go stale and,
			// once the old one is gone, the flow is pinned never-NATed.
			if err := flows.Endpoints(ctx); err != nil {
				b.Fatal(err)
			}
			_ = lab.RemoveDNAT(lb, podAddr)
			// The old NATed entry goes (kube-proxy does this on endpoint removal);
			// exit 1 when there is none is fine.
			_ = exec.Command("ip", "netns", "exec", lab.NS("node"), "conntrack", "-D", "-p", "udp", "--orig-dst", netlab.LBIP.String()).Run()
			waitNeverNATed(b, ct)
			if err := lab.DNAT(lb, podAddr); err != nil { // kube-proxy, before the agent sees the slice
				b.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // prove nothing arrives meanwhile
			before := pod.Packets()
			time.Sleep(200 * time.Millisecond)
			if pod.Packets() != before {
				b.Fatal("packets reached the pod before the endpoint came back")
			}
			if err := flows.Endpoints(ctx, netlab.PodIP); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			at, err := pod.WaitPacket(wctx, t0)
			cancel()
			if err != nil {
				b.Fatalf("trial %d: no packet", trial)
			}
			lat = append(lat, at.Sub(t0))
		}
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		fmt.Fprintf(os.Stderr, "recovery over %d trials: p50 %v, p99 %v, min %v, max %v (debounce 100ms)\n",
			trials, p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	}
}

func waitNeverNATed(b *testing.B, ct *conntrackagent.Netlink) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		found := false
		if _, err := ct.Scan(context.Background(), func(f conntrackagent.Flow) {
			found = found || (f.OrigSrc.Port() == 40000 && f.ReplySrc.Addr() == netlab.LBIP)
		}); err != nil {
			b.Fatal(err)
		}
		if found {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("no never-NATed entry")
}
