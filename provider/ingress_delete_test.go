package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// destroy runs Delete's order on the world.
func (w *ingressWorld) destroy(state *ingressModel) diag.Diagnostics {
	var diags diag.Diagnostics
	d := &ingressDelete{poll: time.Millisecond, kube: w.kube, state: state, owner: ruleOwner("flows", "collector"), diags: &diags,
		aws: func() (ingressAWS, bool) { return ingressAWS{ec2: w.ec2, cluster: "cluster-1"}, true }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // bounds a destroy that would wait forever
	defer cancel()
	d.run(ctx)
	return diags
}

// leftovers lists what the ingress holds in the cluster and AWS.
func (w *ingressWorld) leftovers() []string {
	var out []string
	for _, svc := range w.services(context.Background()) {
		out = append(out, "Service "+svc.Namespace+"/"+svc.Name)
	}
	w.ec2.mu.Lock()
	defer w.ec2.mu.Unlock()
	for id, g := range w.ec2.groups {
		if g.tags[annotations.IngressTag] == "flows/collector" {
			out = append(out, "security group "+id)
		}
		for _, r := range g.rules {
			if strings.Contains(r.desc, "flows/collector") {
				out = append(out, fmt.Sprintf("rule %s on %s", r, id))
			}
		}
	}
	return out
}

// TestIngressDestroyLeavesNothing: a create that fails at any of its calls
// saves what it made, and a destroy of that state (Terraform replaces the
// tainted object) leaves nothing of the ingress in AWS or the cluster, the
// node group's other rules untouched; a destroy failing at any of its own
// calls, retried, does too.
func TestIngressDestroyLeavesNothing(t *testing.T) {
	for _, s := range applyScenarios() {
		if s.from != nil {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			w, _ := s.prepare(t)
			plan := s.to.plan()
			if diags := w.apply(plan, nil); diags.HasError() {
				t.Fatal(diags)
			}
			total := w.calls
			for n := 1; n <= total; n++ {
				w, _ := s.prepare(t)
				w.failAt = n
				plan := s.to.plan()
				w.apply(plan, nil)
				w.failAt = 0
				if plan.ID.IsUnknown() {
					if left := w.leftovers(); len(left) > 0 {
						t.Errorf("call %d (%s) failing: nothing saved, yet %v", n, w.failed, left)
					}
					continue
				}
				if diags := w.destroy(partialState(t, plan)); diags.HasError() {
					t.Fatalf("call %d (%s) failing, then a destroy: %v", n, w.failed, diags)
				}
				if left := w.leftovers(); len(left) > 0 {
					t.Errorf("call %d (%s) failing, then a destroy, leaves %v", n, w.failed, left)
				}
				if got := w.ec2.rulesOf(w.node); len(got) != 1 || got[0].desc != "ssh" {
					t.Errorf("call %d (%s) failing, then a destroy: the node group holds %v, want its own rule only", n, w.failed, got)
				}
			}
			// The destroy itself failing at each call, then retried.
			w.calls = 0
			state := stateModel(t, plan)
			if diags := w.destroy(state); diags.HasError() {
				t.Fatal(diags)
			}
			destroyCalls := w.calls
			for n := 1; n <= destroyCalls; n++ {
				w, _ := s.prepare(t)
				plan := s.to.plan()
				if diags := w.apply(plan, nil); diags.HasError() {
					t.Fatal(diags)
				}
				w.calls, w.failAt = 0, n
				first := w.destroy(stateModel(t, plan))
				w.failAt = 0
				if !first.HasError() && len(w.leftovers()) > 0 {
					t.Errorf("destroy call %d (%s) failing: no error, yet %v left", n, w.failed, w.leftovers())
				}
				if diags := w.destroy(stateModel(t, plan)); diags.HasError() {
					t.Fatalf("destroy call %d (%s) failing, then again: %v", n, w.failed, diags)
				}
				if left := w.leftovers(); len(left) > 0 {
					t.Errorf("destroy call %d (%s) failing, then again, leaves %v", n, w.failed, left)
				}
			}
			t.Logf("create: %d calls, destroy: %d calls, each failed in turn", total, destroyCalls)
		})
	}
}

// stateModel is the state a successful apply saves.
func stateModel(t *testing.T, plan *ingressModel) *ingressModel {
	state := stateOf(t, plan, false)
	out := &ingressModel{}
	if d := state.Get(context.Background(), out); d.HasError() {
		t.Fatal(d)
	}
	return out
}
