package nlbpolicy_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
)

// TestAPIServerOutage: the API server goes away for 15 s while the
// controller runs (localplane.Outage cuts it); Services created and deleted meanwhile are handled once
// it is back (the new one acknowledged, the deleted one's policies gone and
// its finalizer released), with no restart of the controller.
func TestAPIServerOutage(t *testing.T) {
	t.Parallel() // on a plane of its own
	p, c := planeWithNLBs(t)
	ctx := context.Background()
	outage, err := p.NewOutage()
	if err != nil {
		t.Fatal(err)
	}
	defer outage.Close()
	startControllerAs(t, p, outage.Config, false, ctrl.Options{})
	acked := func(svc *corev1.Service) func() (bool, string) {
		return func() (bool, string) {
			got, ok := get(t, c, svc)
			return ok && ack.Current(got), "not acknowledged"
		}
	}
	before := service("telemetry", "before")
	if err := c.Create(ctx, before); err != nil {
		t.Fatal(err)
	}
	eventually(t, "acknowledgement before the outage", acked(before))

	outage.Down()
	during := service("telemetry", "during")
	if err := c.Create(ctx, during); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, before); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	if got, ok := get(t, c, during); ok && ack.Current(got) {
		t.Fatal("acknowledged while the controller could not reach the API server")
	}
	if err := outage.Up(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	eventually(t, "the Service created during the outage acknowledged", acked(during))
	eventually(t, "the Service deleted during the outage released, its policies gone", func() (bool, string) {
		_, exists := get(t, c, before)
		ps, ss := owned(t, c, before)
		return !exists && len(ps)+len(ss) == 0, "still there"
	})
	t.Logf("after a 15 s outage, the controller caught up %.1f s after the API server was back", time.Since(back).Seconds())
}
