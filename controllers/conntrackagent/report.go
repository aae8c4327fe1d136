package conntrackagent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// What the agent tells: the node's dataplane (a metric, an Event on the
// Node) and each pass's result (metrics, rate-limited Events on the
// Service).

// Detected is the dataplane found last (zero before the first detection or
// without Dataplane).
func (a *Agent) Detected() Dataplane {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dataplane == nil {
		return Dataplane{}
	}
	return *a.dataplane
}

// detectDataplane asks for the node's service proxy and reports a change.
func (a *Agent) detectDataplane(ctx context.Context) {
	if a.Dataplane == nil {
		return
	}
	d := a.Dataplane(ctx)
	a.mu.Lock()
	prev := a.dataplane
	a.dataplane = &d
	a.mu.Unlock()
	if prev != nil && prev.Mode == d.Mode {
		return
	}
	a.Metrics.setDataplane(d)
	a.Log.Info("dataplane", "mode", d.Mode, "acts", d.Acts(), "detail", d.Summary())
	if a.Recorder != nil && a.NodeName != "" {
		typ := corev1.EventTypeNormal
		if !d.Acts() || d.Mode == "unknown" {
			typ = corev1.EventTypeWarning
		}
		// The kubelet's own reference to its Node: UID is the node's name.
		node := &corev1.ObjectReference{Kind: "Node", Name: a.NodeName, UID: types.UID(a.NodeName)}
		a.Recorder.Eventf(node, nil, typ, reasons.ConntrackAgentDataplane, "Detect", "%s", d.Summary())
	}
}

// report emits one Event per Service per eventInterval, with what the
// kernel did: deleted, already gone, refused.
func (a *Agent) report(res PassResult) {
	if a.Recorder == nil {
		return
	}
	for key, r := range res.PerService {
		a.mu.Lock()
		last := a.lastEvent[key]
		due := a.Clock.Since(last) >= eventInterval || r.Failed > 0 && a.Clock.Since(last) >= eventInterval/6
		if due {
			a.lastEvent[key] = a.Clock.Now()
		}
		a.mu.Unlock()
		if !due {
			continue
		}
		services, _ := a.listers()
		svc, err := services.Services(key.Namespace).Get(key.Name)
		if err != nil {
			continue // deleted Service: nothing to attach the Event to
		}
		switch {
		case a.DryRun:
			a.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.StaleConntrackEntries, "Delete",
				"Found %d stale UDP conntrack entries on node %s (dry run: none deleted)", r.Found, a.NodeName)
		case r.Failed > 0:
			a.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reasons.StaleConntrackDeleteFailed, "Delete",
				"Deleted %d of %d stale UDP conntrack entries on node %s; the kernel refused %d (the agent's log says why), %d were gone already",
				r.Deleted, r.Found, a.NodeName, r.Failed, r.Vanished)
		default:
			a.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.StaleConntrackEntries, "Delete",
				"Deleted %d stale UDP conntrack entries on node %s (never NATed, or NATed to an endpoint that is gone); %d more were gone already",
				r.Deleted, a.NodeName, r.Vanished)
		}
	}
}
