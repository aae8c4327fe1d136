package conntrackagent

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// TestRevocationTrustsOnlyTheController: an acknowledgement on a Service
// without the nlb-policy controller's finalizer (which the controller adds
// before it writes any) was not the controller's, so no revocation follows
// it; and a Service's external IPs, which any of its editors may set to
// someone else's address, are never revocation targets.
func TestRevocationTrustsOnlyTheController(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "x", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.50", ClusterIPs: []string{"10.96.0.50"},
			ExternalIPs: []string{"203.0.113.80", "2001:db8:80::1"}, LoadBalancerSourceRanges: []string{"192.0.2.0/24"},
			Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: 443}}},
	}
	svc.Annotations[annotations.Enforced] = ack.Ack{Digest: ack.Digest(svc)}.Encode()
	if _, ok := enforcedSources(svc); ok {
		t.Error("an acknowledgement without the controller's finalizer was taken as enforced")
	}
	svc.Finalizers = []string{annotations.NLBPolicyFinalizer}
	if s, ok := enforcedSources(svc); !ok || s.Len() != 1 {
		t.Errorf("the controller's acknowledgement not taken: %v %v", s.Strings(), ok)
	}
	removed, _ := cidrset.Parse([]string{"198.51.100.0/24", "2001:db8:5::/48"})
	r := NewRevocation(removed, cidrset.Set{}, svc, nil, nil)
	for _, dst := range []string{"203.0.113.80:443", "[2001:db8:80::1]:443"} {
		if r.Revoked(Flow{Proto: protoTCP, OrigSrc: netip.MustParseAddrPort("198.51.100.7:5000"), OrigDst: netip.MustParseAddrPort(dst)}) {
			t.Errorf("a connection to the external IP %s would be revoked", dst)
		}
	}
	if !r.Revoked(Flow{Proto: protoTCP, OrigSrc: netip.MustParseAddrPort("198.51.100.7:5000"), OrigDst: netip.MustParseAddrPort("10.96.0.50:443")}) {
		t.Error("a connection of a removed source to the ClusterIP is not revoked")
	}
	// EndpointSlices: only the EndpointSlice controller's name the Service's
	// pods; one made by hand (a tenant may write them) names any address.
	handMade := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "x-hand", Labels: map[string]string{discoveryv1.LabelServiceName: "x"}},
		Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("p"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(8443))}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"203.0.113.99"}}, {Addresses: []string{"2001:db8:99::1"}}},
	}
	controller := handMade.DeepCopy()
	controller.Name, controller.Labels = "x-abc", map[string]string{discoveryv1.LabelServiceName: "x", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}
	controller.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.7"}}, {Addresses: []string{"fd00:1::7"}}}
	r = NewRevocation(removed, cidrset.Set{}, svc, []*discoveryv1.EndpointSlice{handMade, controller}, nil)
	for dst, want := range map[string]bool{"203.0.113.99:8443": false, "[2001:db8:99::1]:8443": false, "10.1.0.7:8443": true, "[fd00:1::7]:8443": true} {
		src := "198.51.100.7:5000"
		if strings.HasPrefix(dst, "[") {
			src = "[2001:db8:5::1]:5000"
		}
		if got := r.Revoked(Flow{Proto: protoTCP, OrigSrc: netip.MustParseAddrPort(src), OrigDst: netip.MustParseAddrPort(dst)}); got != want {
			t.Errorf("a connection to the endpoint %s revoked = %v, want %v", dst, got, want)
		}
	}
}
