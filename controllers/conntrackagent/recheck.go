package conntrackagent

import "time"

// rechecks are the entries passes deleted whose flows are still to be seen
// NATed: when the agent acts before kube-proxy has written its DNAT rule, the
// flow's next packet re-creates a never-NATed entry, which a recheck deletes
// again. The set is the union over passes: a pass for another Service (or
// the periodic one) adds its deletions to it and ends no one's rechecks.
type rechecks struct {
	flows  map[tupleKey]recheckedFlow
	streak time.Time     // when the latest pass that was not a recheck deleted
	delay  time.Duration // until the next recheck
}

type recheckedFlow struct {
	flow    Flow
	deleted time.Time // when the agent last deleted its entry
}

// after takes in a pass's result (a recheck or not) and says when the next
// recheck is due (ok false: none is). A flow leaves the set when its entry
// came back not stale (NATed), or when recheckPatience has passed since its
// last deletion (its flow stopped, or the kernel keeps refusing). The delay
// is first for recheckSteady after a pass that was not a recheck deleted,
// then doubles up to limit. After a pass that was not a recheck and deleted
// nothing, the recheck already due stays as it was (the caller keeps its
// timer).
func (r *rechecks) after(res PassResult, recheck bool, now time.Time, first, limit time.Duration) (next time.Duration, ok bool) {
	if first <= 0 {
		return 0, false
	}
	if r.flows == nil {
		r.flows = map[tupleKey]recheckedFlow{}
	}
	for _, f := range res.DeletedFlows {
		r.flows[keyOf(f)] = recheckedFlow{flow: f, deleted: now}
	}
	if recheck {
		for _, f := range res.Settled {
			delete(r.flows, keyOf(f))
		}
		for k, f := range r.flows {
			if now.Sub(f.deleted) >= recheckPatience {
				delete(r.flows, k)
			}
		}
	}
	if len(r.flows) == 0 {
		return 0, false
	}
	switch {
	case !recheck && len(res.DeletedFlows) > 0:
		r.delay, r.streak = first, now
	case recheck && now.Sub(r.streak) > recheckSteady:
		r.delay = min(2*r.delay, max(limit, first))
	}
	return r.delay, true
}

// list is the flows to look up in the next recheck.
func (r *rechecks) list() []Flow {
	out := make([]Flow, 0, len(r.flows))
	for _, f := range r.flows {
		out = append(out, f.flow)
	}
	return out
}
