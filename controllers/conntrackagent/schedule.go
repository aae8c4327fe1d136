package conntrackagent

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// When passes run: at start, on coalesced triggers (Debounce), on rechecks
// after a pass that deleted (recheck.go), and every Period. All waiting goes
// through the agent's Clock.

// loop runs the passes: at once, then on each trigger, recheck and tick.
func (a *Agent) loop(ctx context.Context, tick <-chan time.Time) error {
	reason := "start"
	a.detectDataplane(ctx)
	var (
		recheck  clock.Timer
		recheckC <-chan time.Time
		pending  rechecks
		scope    []types.NamespacedName // nil: every entry
	)
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for {
		var res PassResult
		var err error
		isRecheck := reason == "recheck"
		if isRecheck {
			res, err = a.RecheckPass(ctx, pending.list())
		} else {
			res, err = a.PassScoped(ctx, reason, scope)
		}
		if err != nil && ctx.Err() == nil {
			a.Log.Error(err, "pass failed", "trigger", reason)
		}
		// Rechecks follow a pass whose deletions the kernel confirmed, over
		// the entries every pass deleted; they go on, backing off, while they
		// keep finding them stale again, and for recheckPatience while an
		// entry is not back yet (its flow's next packet may still be on its
		// way: on a loaded node a look can come before it).
		delay, ok := pending.after(res, isRecheck, a.Clock.Now(), a.Recheck, a.RecheckMax)
		switch {
		case !ok:
			if recheck != nil {
				recheck.Stop()
			}
			recheckC = nil
		case isRecheck || len(res.DeletedFlows) > 0:
			if recheck != nil {
				recheck.Stop()
			}
			recheck = a.Clock.NewTimer(delay)
			recheckC = recheck.C()
		}
		if stop, err := a.wait(ctx, tick, recheckC, &reason); stop {
			return err
		}
		switch reason {
		case "period":
			scope = nil
		case "recheck":
		default:
			scope = a.takePending()
		}
	}
}

// takePending returns the Services the triggers named, or nil when one
// asked for every entry.
func (a *Agent) takePending() []types.NamespacedName {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []types.NamespacedName
	if !a.pendingAll {
		for s := range a.pending {
			out = append(out, s)
		}
	}
	clear(a.pending)
	a.pendingAll = false
	return out
}

// wait runs revocation passes until the next stale pass is due, and says
// why in reason; stop is true when ctx ended.
func (a *Agent) wait(ctx context.Context, tick, recheckC <-chan time.Time, reason *string) (stop bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-tick:
			*reason = "period"
			a.detectDataplane(ctx)
			return false, nil
		case <-recheckC:
			*reason = "recheck"
			return false, nil
		case <-a.revokeReady:
			a.runRevokes(ctx)
		case *reason = <-a.trigger:
			// Coalesce what arrives during the debounce.
			timer := a.Clock.NewTimer(a.Debounce)
			select {
			case <-ctx.Done():
				timer.Stop()
				return true, nil
			case <-timer.C():
			}
			select {
			case <-a.trigger:
			default:
			}
			return false, nil
		}
	}
}

// kick asks for a pass over the entries of these Services (none: all).
func (a *Agent) kick(reason string, services ...types.NamespacedName) {
	a.mu.Lock()
	if len(services) == 0 {
		a.pendingAll = true
	}
	now := a.Clock.Now()
	for _, s := range services {
		a.pending[s] = true
		if _, ok := a.changedAt[s]; !ok {
			a.changedAt[s] = now
		}
	}
	a.mu.Unlock()
	select {
	case a.trigger <- reason:
	default: // a pass is already due
	}
}
