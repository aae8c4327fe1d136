package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Fail closed: the nlb-policy controller stopped while an exporter is added.

// controllerStopped shows the fail-closed contract: with the nlb-policy
// controller stopped, an apply that adds an exporter fails (nobody
// acknowledges the new sources), and the new exporter stays refused by
// Calico and by the NLB's security group; with the controller back, the
// same apply succeeds and the exporter is admitted.
func (d *demo) controllerStopped() error {
	const added = "203.0.113.64/27"
	exporter := netip.MustParseAddr("203.0.113.65")
	d.stopController()
	d.stopController = func() {}
	d.note("nlb-policy controller stopped; terraform apply adds %s to the first PoP (enforcement_timeout 15s)", added)
	vars := append(slices.Clone(d.vars), "-var", `extra_sources=["`+added+`"]`)
	res, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false", "-var", "enforcement_timeout=15s"}, vars...)...)
	if err == nil {
		return fmt.Errorf("terraform apply succeeded with the nlb-policy controller stopped: the product's fail-closed claim is false")
	}
	if !strings.Contains(string(res.Output), "has not acknowledged policies") {
		return fmt.Errorf("terraform apply failed, but not for want of the acknowledgement: %w", err)
	}
	d.note("terraform apply failed after %v: \"the nlb-policy controller has not acknowledged policies ...", res.Duration.Round(100*time.Millisecond))
	d.note("  No security-group rule was added, so the NLB admits no new source.\"")
	refusedBy, err := d.admitted(exporter)
	if err != nil {
		return err
	}
	if refusedBy == "" {
		return fmt.Errorf("%s is admitted although the controller never acknowledged it", exporter)
	}
	d.note("the new exporter %s meanwhile: refused (%s)", exporter, refusedBy)

	if d.stopController, err = d.startNLBPolicyController(); err != nil {
		return err
	}
	if _, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...); err != nil {
		return fmt.Errorf("terraform apply with the controller back: %w", err)
	}
	if refusedBy, err = d.admitted(exporter); err != nil {
		return err
	}
	if refusedBy != "" {
		return fmt.Errorf("%s is still refused (%s) after the controller acknowledged it", exporter, refusedBy)
	}
	plan, err := d.tf.Run(d.ctx, d.dir, append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...)
	if err != nil {
		return err
	}
	if plan.ExitCode != 0 {
		return fmt.Errorf("the plan after the controller came back is not empty:\n%s", plan.Output)
	}
	d.note("controller started again: the same apply succeeds, %s is admitted by Calico and the NLB's group, plan empty", exporter)
	d.vars = vars
	d.result("Controller stopped", "apply refused, new exporter refused by Calico and the NLB group; admitted once the controller is back")
	return nil
}
