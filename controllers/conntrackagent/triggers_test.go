package conntrackagent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func TestTriggers(t *testing.T) {
	withLB := udpService("flows", []string{"10.96.0.10"}, "203.0.113.10", 6343, 30001)
	noLB := udpService("flows", []string{"10.96.0.10"}, "", 6343, 30001)
	proxied := withLB.DeepCopy()
	proxied.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(corev1.LoadBalancerIPModeProxy)
	external := noLB.DeepCopy()
	external.Spec.ExternalIPs = []string{"198.18.0.10"}
	relabelled := withLB.DeepCopy()
	relabelled.Labels = map[string]string{"team": "net"}
	movedPort := withLB.DeepCopy()
	movedPort.Spec.Ports[0].NodePort = 30002
	tcpOnly := withLB.DeepCopy()
	tcpOnly.Spec.Ports = tcpOnly.Spec.Ports[1:]
	tcpOnly2 := tcpOnly.DeepCopy()
	tcpOnly2.Status.LoadBalancer.Ingress = nil

	for _, tc := range []struct {
		name     string
		old, cur *corev1.Service
		want     bool
	}{
		{"LB IP assigned after the endpoints", noLB, withLB, true},
		{"external IP added", noLB, external, true},
		{"NodePort changed", withLB, movedPort, true},
		{"label change only", withLB, relabelled, false},
		{"LB IP assigned with ipMode Proxy: nothing NATs it", noLB, proxied, false},
		{"TCP-only Service", tcpOnly, tcpOnly2, false},
	} {
		if got := serviceAddressesChanged(tc.old, tc.cur); got != tc.want {
			t.Errorf("Service %s: pass = %v, want %v", tc.name, got, tc.want)
		}
	}

	one := slice("flows", 16343, "198.51.100.7")
	two := slice("flows", 16343, "198.51.100.7", "198.51.100.8")
	other := slice("flows", 16343, "198.51.100.8")
	none := slice("flows", 16343)
	notReady := one.DeepCopy()
	notReady.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}
	terminating := one.DeepCopy()
	terminating.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	tcp := two.DeepCopy()
	tcp.Ports[0].Protocol = ptr.To(corev1.ProtocolTCP)
	tcpOne := one.DeepCopy()
	tcpOne.Ports[0].Protocol = ptr.To(corev1.ProtocolTCP)
	renumbered := one.DeepCopy()
	renumbered.Ports[0].Port = ptr.To(int32(16344))

	for _, tc := range []struct {
		name     string
		old, cur *discoveryv1.EndpointSlice
		want     bool
	}{
		{"0 -> 1", none, one, true},
		{"not ready -> ready (0 -> 1 serving)", notReady, one, true},
		{"1 -> 2: nothing goes stale", one, two, false},
		{"2 -> 1: entries NATed to the removed one", two, one, true},
		{"endpoint replaced", one, other, true},
		{"ready -> terminating but serving", one, terminating, false},
		{"serving -> not serving", one, notReady, true},
		{"1 -> 0", one, none, true},
		{"target port changed", one, renumbered, true},
		{"TCP slice 2 -> 1: no UDP entry to fix", tcp, tcpOne, false},
		{"not ready endpoint removed: it served nothing", func() *discoveryv1.EndpointSlice {
			s := two.DeepCopy()
			s.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}
			return s
		}(), one, false},
	} {
		if got := endpointsNeedPass(tc.old, tc.cur); got != tc.want {
			t.Errorf("EndpointSlice %s: pass = %v, want %v", tc.name, got, tc.want)
		}
	}

	for _, tc := range []struct {
		name      string
		obj       any
		add, dele bool
	}{
		{"UDP slice with an endpoint", one, true, true},
		{"UDP slice without endpoints", none, false, false},
		{"TCP slice", tcp, false, false},
		{"tombstone of a UDP slice", cache.DeletedFinalStateUnknown{Key: "telemetry/flows-abc", Obj: one}, false, true},
	} {
		if got := sliceAddedNeedsPass(tc.obj); got != tc.add {
			t.Errorf("added %s: pass = %v, want %v", tc.name, got, tc.add)
		}
		if got := sliceDeletedNeedsPass(tc.obj); got != tc.dele {
			t.Errorf("deleted %s: pass = %v, want %v", tc.name, got, tc.dele)
		}
	}
}
