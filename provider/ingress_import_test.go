package provider

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestImportSkipsToolAnnotations: importing a Service made with kubectl
// adopts its users' annotations, not kubectl's own bookkeeping
// (last-applied-configuration), which the plan would then show going to null
// and which an apply never removes (the provider does not own it), so the
// plan would advertise what apply does not do.
func TestImportSkipsToolAnnotations(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "flows", Annotations: map[string]string{
		lastAppliedAnnotation: `{"apiVersion":"v1","kind":"Service"}`,
		"example.com/team":    "netops",
	}}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
		Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}}}
	var m ingressModel
	if d := m.setFromService(context.Background(), svc); d.HasError() {
		t.Fatal(d)
	}
	got := m.Annotations.Elements()
	if _, ok := got[lastAppliedAnnotation]; ok {
		t.Errorf("import adopted %s: %v", lastAppliedAnnotation, got)
	}
	if _, ok := got["example.com/team"]; !ok {
		t.Errorf("import did not adopt the user's annotation: %v", got)
	}
}
