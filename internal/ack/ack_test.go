package ack

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

func svc() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "flows", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Selector:                 map[string]string{"app": "sfacctd"},
			LoadBalancerSourceRanges: []string{"192.0.2.0/25", "192.0.2.128/25", "2001:db8::/32"},
			HealthCheckNodePort:      31000,
			Ports: []corev1.ServicePort{
				{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343, TargetPort: intstr.FromInt32(6343), NodePort: 30001},
				{Name: "ipfix", Protocol: corev1.ProtocolUDP, Port: 4739, TargetPort: intstr.FromInt32(4739), NodePort: 30002},
			},
		},
	}
}

func TestDigestFollowsWhatPoliciesDependOn(t *testing.T) {
	base := Digest(svc())
	same := map[string]func(*corev1.Service){
		"ranges spelt otherwise":     func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"2001:db8::/32", "192.0.2.0/24"} },
		"ports in another order":     func(s *corev1.Service) { s.Spec.Ports[0], s.Spec.Ports[1] = s.Spec.Ports[1], s.Spec.Ports[0] },
		"an unrelated annotation":    func(s *corev1.Service) { s.Annotations["x"] = "y" },
		"the acknowledgement itself": func(s *corev1.Service) { s.Annotations[annotations.Enforced] = Ack{Digest: "z"}.Encode() },
	}
	differ := map[string]func(*corev1.Service){
		"a source removed":       func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"} },
		"IPv6 source changed":    func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges[2] = "2001:db9::/32" },
		"a NodePort reallocated": func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30009 },
		"a target port":          func(s *corev1.Service) { s.Spec.Ports[1].TargetPort = intstr.FromInt32(4740) },
		"a protocol":             func(s *corev1.Service) { s.Spec.Ports[1].Protocol = corev1.ProtocolTCP },
		"health-check NodePort":  func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 31001 },
		"ip targets":             func(s *corev1.Service) { s.Annotations[lbc.NLBTargetType] = lbc.TargetIP },
		"pod selector":           func(s *corev1.Service) { s.Spec.Selector["tier"] = "edge" },
		"host-endpoint selector": func(s *corev1.Service) { s.Annotations[annotations.HostEndpointSelector] = "role == 'edge'" },
		"sources by annotation": func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = nil
			s.Annotations[lbc.SourceRanges] = "198.51.100.0/24"
		},
		"no sources at all": func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = nil },
		"a port added": func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Protocol: "TCP", Port: 1, NodePort: 30003})
		},
	}
	for name, m := range same {
		s := svc()
		m(s)
		if Digest(s) != base {
			t.Errorf("%s changed the digest", name)
		}
	}
	for name, m := range differ {
		s := svc()
		m(s)
		if Digest(s) == base {
			t.Errorf("%s kept the digest", name)
		}
	}
}

func TestCurrent(t *testing.T) {
	s := svc()
	if Current(s) {
		t.Fatal("no acknowledgement counted as current")
	}
	s.Annotations[annotations.Enforced] = Ack{Digest: Digest(s), Policies: []string{"a"}, Time: time.Now()}.Encode()
	if !Current(s) {
		t.Fatal("acknowledgement of the current spec not current")
	}
	s.Spec.LoadBalancerSourceRanges = append(s.Spec.LoadBalancerSourceRanges, "203.0.113.0/24")
	if Current(s) {
		t.Fatal("acknowledgement of an older spec counted as current")
	}
	s.Annotations[annotations.Enforced] = Ack{Problem: "refused"}.Encode()
	if Current(s) {
		t.Fatal("an acknowledgement without digest counted as current")
	}
	s.Annotations[annotations.Enforced] = "{not json"
	if _, ok := Of(s); ok || Current(s) {
		t.Fatal("garbage parsed")
	}
}

// TestCompatible: an acknowledgement of another version is incompatible,
// naming both versions; none, or one without a version (version 1), is
// not; and Same tells versions apart, so an upgraded controller rewrites
// the acknowledgements of the old version.
func TestCompatible(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", Annotations: map[string]string{}}}
	if err := Compatible(svc); err != nil {
		t.Errorf("no acknowledgement: %v", err)
	}
	for v, want := range map[int]string{0: "", 1: "", 2: "version 2"} {
		svc.Annotations[annotations.Enforced] = Ack{V: v, Digest: "sha256:x"}.Encode()
		err := Compatible(svc)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("version %d: %v, want %q", v, err, want)
		}
	}
	if Same(Ack{V: 0, Digest: "d"}, Ack{V: 2, Digest: "d"}) || !Same(Ack{V: 0, Digest: "d"}, Ack{V: 1, Digest: "d"}) {
		t.Error("Same does not tell version 2 from 1, or tells an unversioned acknowledgement from version 1")
	}
}
