// Command ctpass runs one conntrack-agent pass in the current network
// namespace for the benchmark's Service (LB 203.0.113.10:6343, endpoint
// 198.51.100.20:16343) and prints what it did: a full pass (every UDP
// entry), or with -targeted the pass a change of that Service triggers (the
// kernel sends only the entries to its addresses), or with -indexed that
// pass read from the agent's index (built first by a full pass while
// watching conntrack events, as the running agent does; the line "PASS
// <seconds>" on stderr is the targeted pass alone). Run it with
// `ip netns exec NS /usr/bin/time ...` to measure time and peak memory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
)

func main() {
	targeted := flag.Bool("targeted", false, "scan only the Service's entries (kernel filter on the destination)")
	indexed := flag.Bool("indexed", false, "build the index (full pass, events watched), then run the targeted pass from it")
	flag.Parse()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "flows"},
		Spec:   corev1.ServiceSpec{ClusterIP: "198.51.100.10", Ports: []corev1.ServicePort{{Name: "flows", Protocol: corev1.ProtocolUDP, Port: 6343}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.10"}}}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Labels: map[string]string{discoveryv1.LabelServiceName: "flows"}},
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("flows"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(int32(16343))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.51.100.20"}}}}
	table := conntrackagent.NewTable([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}, nil, nil)
	n := &conntrackagent.Netlink{Workers: 4, RecvBuffer: 8 << 20}
	var stale []conntrackagent.Flow
	filters := []conntrackagent.Filter{{Proto: 17}}
	if *targeted || *indexed {
		filters = table.Filters([]types.NamespacedName{{Namespace: "telemetry", Name: "flows"}})
	}
	keep := func(f conntrackagent.Flow) {
		if ok, _ := table.Stale(f); ok {
			stale = append(stale, f)
		}
	}
	var (
		stats conntrackagent.ScanStats
		err   error
		start time.Time
	)
	if *indexed {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		idx := conntrackagent.NewIndex(2_000_000)
		if _, err := n.Watch(ctx, func(f conntrackagent.Flow, gone bool) {
			if gone {
				idx.Remove(f)
			} else {
				idx.Put(f)
			}
		}, idx.Lost); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		idx.Watching(true)
		built := time.Now()
		idx.BeginFull()
		_, err = n.ScanFiltered(ctx, []conntrackagent.Filter{{Proto: 17}}, idx.Put)
		idx.EndFull(err == nil)
		entries, complete := idx.Len()
		fmt.Printf("index of %d entries (complete %v) built in %v; ", entries, complete, time.Since(built).Round(time.Millisecond))
		start = time.Now()
		var ok bool
		stats.Scanned, ok = idx.Select(filters, keep)
		if !ok {
			fmt.Fprintln(os.Stderr, "index incomplete")
			os.Exit(1)
		}
	} else {
		start = time.Now()
		stats, err = n.ScanFiltered(context.Background(), filters, keep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scanned := time.Since(start)
	out, err := n.Delete(context.Background(), stale)
	ds := conntrackagent.Tally(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	total := time.Since(start)
	fmt.Printf("scanned %d (kernel filter %v) in %v, deleted %d, vanished %d, total %v\n",
		stats.Scanned, stats.Filter, scanned.Round(time.Millisecond), ds.Deleted, ds.Vanished, total.Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "PASS %.6f\n", total.Seconds())
}
