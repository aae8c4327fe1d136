package conntrackagent

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// The informer events that call for a pass. Each is pure, so the choice is
// table-tested (triggers_test.go); a pass it misses the periodic one makes.

func hasUDP(o any) bool {
	svc, ok := o.(*corev1.Service)
	return ok && slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Protocol == corev1.ProtocolUDP })
}

// serviceAddressesChanged: new addresses (an LB IP assigned later, external
// IPs) or ports can make existing entries stale without any endpoint change.
func serviceAddressesChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Service)
	c, ok2 := cur.(*corev1.Service)
	if !ok1 || !ok2 || !hasUDP(c) {
		return false
	}
	return !slices.Equal(ServiceIPs(o), ServiceIPs(c)) || !slices.EqualFunc(o.Spec.Ports, c.Spec.Ports,
		func(a, b corev1.ServicePort) bool {
			return a.Port == b.Port && a.NodePort == b.NodePort && a.Protocol == b.Protocol
		})
}

// sliceHasUDP: a slice without a UDP port cannot make a UDP entry stale (the
// API server defaults an unset protocol to TCP).
func sliceHasUDP(o any) bool {
	s, ok := o.(*discoveryv1.EndpointSlice)
	return ok && slices.ContainsFunc(s.Ports, func(p discoveryv1.EndpointPort) bool {
		return p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP
	})
}

// sliceAddedNeedsPass: a new slice with serving UDP endpoints (0 -> N).
func sliceAddedNeedsPass(o any) bool {
	return sliceHasUDP(o) && servingCount(o) > 0
}

// sliceDeletedNeedsPass: a deleted UDP slice that served takes its
// endpoints with it (entries NATed to them). Tombstones of deleted
// Services are handled apart.
func sliceDeletedNeedsPass(o any) bool {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	return sliceHasUDP(o) && servingCount(o) > 0
}

func servingCount(o any) int {
	s, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return 0
	}
	n := 0
	for _, ep := range s.Endpoints {
		if Serving(ep) {
			n += len(ep.Addresses)
		}
	}
	return n
}

// endpointsNeedPass: entries go stale when endpoints come back from zero
// (never-NATed entries) or an endpoint goes away (entries NATed to it).
// Adding an endpoint to a non-empty set makes nothing stale, nor does any
// change to a slice without UDP ports.
func endpointsNeedPass(old, cur any) bool {
	if !sliceHasUDP(old) && !sliceHasUDP(cur) {
		return false
	}
	before, after := servingCount(old), servingCount(cur)
	if before == 0 && after > 0 {
		return true
	}
	o, ok1 := old.(*discoveryv1.EndpointSlice)
	c, ok2 := cur.(*discoveryv1.EndpointSlice)
	if !ok1 || !ok2 {
		return true
	}
	now := map[string]bool{}
	for _, ep := range c.Endpoints {
		if Serving(ep) {
			for _, addr := range ep.Addresses {
				now[addr] = true
			}
		}
	}
	for _, ep := range o.Endpoints {
		if !Serving(ep) {
			continue
		}
		for _, addr := range ep.Addresses {
			if !now[addr] {
				return true
			}
		}
	}
	return !slices.EqualFunc(o.Ports, c.Ports, func(a, b discoveryv1.EndpointPort) bool {
		return ptrEq(a.Port, b.Port) && ptrEq(a.Name, b.Name)
	})
}

func ptrEq[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// serviceKey names a Service (or the tombstone of one).
func serviceKey(o any) types.NamespacedName {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if svc, ok := o.(*corev1.Service); ok {
		return types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	}
	return types.NamespacedName{}
}

// sliceServiceKey names the Service an EndpointSlice belongs to.
func sliceServiceKey(o any) types.NamespacedName {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if s, ok := o.(*discoveryv1.EndpointSlice); ok {
		return types.NamespacedName{Namespace: s.Namespace, Name: s.Labels[discoveryv1.LabelServiceName]}
	}
	return types.NamespacedName{}
}
