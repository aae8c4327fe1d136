package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TestWaitForEnforcementAcknowledgementVersions: an acknowledgement of this
// build's version (or of none: the releases before versioning) is waited
// for as always; one of another version fails the wait at once, naming both
// versions and what to upgrade, instead of at the enforcement timeout.
func TestWaitForEnforcementAcknowledgementVersions(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "flows", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "sfacctd"},
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343, NodePort: 30000}}}}
	for _, tc := range []struct {
		name string
		v    int
		want string // in the error; "" for success
	}{
		{"this version", ack.Version, ""},
		{"no version (before versioning)", 0, ""},
		{"a newer controller", ack.Version + 1, "upgrade the provider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := svc.DeepCopy()
			s.Annotations[annotations.Enforced] = ack.Ack{V: tc.v, Digest: ack.Digest(s)}.Encode()
			c := fake.NewClientBuilder().WithScheme(kubeapi.Scheme()).WithObjects(s).Build()
			start := time.Now()
			err := waitForEnforcement(context.Background(), c, "telemetry", "flows", 30*time.Second)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("%v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), fmt.Sprintf("version %d", tc.v))):
				t.Fatalf("err %v; want one naming version %d and %q", err, tc.v, tc.want)
			case time.Since(start) > 10*time.Second:
				t.Fatalf("took %v: the wait did not end at once", time.Since(start))
			}
		})
	}
}
