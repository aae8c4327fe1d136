package conntrackagent

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// A pass: the table of what is stale built from the informers' view
// (stale.go), entries read from the index or the kernel, stale ones deleted
// (or counted, in a dry run), and the result reported.

// PassResult is what one pass did: Stale entries found, and what the kernel
// did with those the agent asked it to delete.
type PassResult struct {
	Scanned, Stale int
	DeleteStats
	Duration   time.Duration
	PerService map[types.NamespacedName]ServiceResult
	// DeletedFlows are the entries the kernel deleted, for the rechecks;
	// in a recheck, Missing are those not back yet, Settled those back and
	// not stale.
	DeletedFlows, Missing, Settled []Flow
}

// ServiceResult is one Service's share of a pass.
type ServiceResult struct {
	Found int
	DeleteStats
}

// Pass scans the whole table once and deletes the stale entries.
func (a *Agent) Pass(ctx context.Context, trigger string) (PassResult, error) {
	return a.PassScoped(ctx, trigger, nil)
}

// PassScoped is Pass over the entries of some Services only (nil: all): the
// kernel sends only the entries to their addresses and NodePorts, so a pass
// for one Service does not read the whole table.
func (a *Agent) PassScoped(ctx context.Context, trigger string, services []types.NamespacedName) (PassResult, error) {
	res, err := a.passScoped(ctx, trigger, services)
	// The time from each change to the kernel's first deletion it caused (a
	// pass over every entry answers every change pending).
	a.mu.Lock()
	keys := services
	if services == nil {
		for svc := range a.changedAt {
			keys = append(keys, svc)
		}
	}
	for _, svc := range keys {
		if at, ok := a.changedAt[svc]; ok && res.PerService[svc].Deleted > 0 {
			a.Metrics.changeToDelete.Observe(a.Clock.Since(at).Seconds())
		}
		delete(a.changedAt, svc)
	}
	a.mu.Unlock()
	return res, err
}

func (a *Agent) passScoped(ctx context.Context, trigger string, services []types.NamespacedName) (PassResult, error) {
	return a.pass(ctx, trigger, func(table *Table, fn func(Flow)) (ScanStats, error) {
		if services == nil { // every UDP entry: the index is rebuilt from them
			filters := []Filter{{Proto: protoUDP}}
			if a.index == nil {
				return a.Conntrack.ScanFiltered(ctx, filters, fn)
			}
			a.index.BeginFull()
			stats, err := a.Conntrack.ScanFiltered(ctx, filters, func(f Flow) {
				a.index.Put(f)
				fn(f)
			})
			a.index.EndFull(err == nil)
			return stats, err
		}
		filters := table.Filters(services)
		if len(filters) == 0 {
			return ScanStats{}, nil
		}
		if a.index != nil {
			if n, ok := a.index.Select(filters, fn); ok {
				return ScanStats{Scanned: n, Filter: true, Source: "index"}, nil
			}
		}
		return a.Conntrack.ScanFiltered(ctx, filters, fn)
	})
}

// RecheckPass looks up the entries a pass deleted, by their original
// tuples (the next packet of a constant flow re-creates the same one), and
// deletes those that are stale again: kube-proxy had not written its rule
// yet. It reads k entries, not the table, so it can run often.
func (a *Agent) RecheckPass(ctx context.Context, deleted []Flow) (PassResult, error) {
	var missing, settled []Flow
	res, err := a.pass(ctx, "recheck", func(table *Table, fn func(Flow)) (ScanStats, error) {
		cur, err := a.Conntrack.Lookup(ctx, deleted)
		back := map[tupleKey]bool{}
		for _, f := range cur {
			back[keyOf(f)] = true
			if stale, _ := table.Stale(f); !stale {
				settled = append(settled, f)
			}
			fn(f)
		}
		for _, f := range deleted {
			if !back[keyOf(f)] {
				missing = append(missing, f)
			}
		}
		return ScanStats{Scanned: len(cur), Filter: true, Source: "lookup"}, err
	})
	res.Missing, res.Settled = missing, settled
	return res, err
}

// pass runs one pass: read (the whole table, some Services' entries, or
// some entries) through the staleness decision, then delete.
func (a *Agent) pass(ctx context.Context, trigger string, read func(*Table, func(Flow)) (ScanStats, error)) (PassResult, error) {
	start := a.Clock.Now()
	res := PassResult{PerService: map[types.NamespacedName]ServiceResult{}}
	a.mu.Lock()
	dp := a.dataplane
	a.mu.Unlock()
	if dp != nil && !dp.Acts() {
		a.mu.Lock()
		a.lastPass = a.Clock.Now() // healthy: idle on purpose
		a.mu.Unlock()
		a.Log.V(1).Info("pass skipped", "trigger", trigger, "dataplane", dp.Mode)
		return res, nil
	}
	table, err := a.table()
	if err != nil {
		return res, err
	}
	var (
		stale []Flow
		owner []types.NamespacedName
	)
	stats, err := read(table, func(f Flow) {
		if ok, svc := table.Stale(f); ok {
			stale = append(stale, f)
			owner = append(owner, svc)
		}
	})
	res.Scanned, res.Stale = stats.Scanned, len(stale)
	if err != nil {
		a.Metrics.errors.Inc()
		return res, fmt.Errorf("scanning conntrack: %w", err)
	}
	for _, svc := range owner {
		r := res.PerService[svc]
		r.Found++
		res.PerService[svc] = r
	}
	if a.DryRun {
		for _, f := range stale {
			a.Log.Info("would delete stale entry (dry run)", "src", f.OrigSrc, "dst", f.OrigDst, "replySrc", f.ReplySrc)
		}
	} else if len(stale) > 0 {
		outcomes, err := a.Conntrack.Delete(ctx, stale)
		for i, o := range outcomes {
			r := res.PerService[owner[i]]
			r.DeleteStats.add(o)
			res.PerService[owner[i]] = r
			res.DeleteStats.add(o)
			if o == Deleted {
				res.DeletedFlows = append(res.DeletedFlows, stale[i])
			}
			if a.index != nil && (o == Deleted || o == Vanished) {
				a.index.Remove(stale[i]) // its destroy event says it too, unless it vanished unseen
			}
		}
		if missing := len(stale) - len(outcomes); missing > 0 { // a Conntrack that returned fewer
			res.Failed += missing
		}
		if err != nil {
			a.Metrics.errors.Inc()
			a.Log.Error(err, "deleting entries", "failed", res.Failed)
		}
	}
	res.Duration = a.Clock.Since(start)
	a.Metrics.pass(trigger, res, a.DryRun)
	source := stats.Source
	if source == "" {
		source = "kernel"
	}
	a.Metrics.passSource.WithLabelValues(source).Inc()
	if a.index != nil {
		n, complete := a.index.Len()
		a.Metrics.indexEntries.Set(float64(n))
		a.Metrics.indexComplete.Set(map[bool]float64{true: 1}[complete])
	}
	a.mu.Lock()
	a.lastPass = a.Clock.Now()
	a.mu.Unlock()
	if res.Stale > 0 {
		a.Log.Info("pass", "trigger", trigger, "read", source, "scanned", res.Scanned, "stale", res.Stale, "deleted", res.Deleted,
			"vanished", res.Vanished, "failed", res.Failed, "dryRun", a.DryRun, "duration", res.Duration)
		a.report(res)
	} else {
		a.Log.V(1).Info("pass", "trigger", trigger, "read", source, "scanned", res.Scanned, "duration", res.Duration)
	}
	return res, nil
}

func (a *Agent) table() (*Table, error) {
	services, slices := a.listers()
	svcs, err := services.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	eps, err := slices.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	local, err := a.LocalAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing local addresses: %w", err)
	}
	a.mu.Lock()
	var tombs []Tombstone
	for k, t := range a.tombs {
		if a.Clock.Now().After(t.Expires) {
			delete(a.tombs, k)
			continue
		}
		tombs = append(tombs, t)
	}
	a.mu.Unlock()
	// A Service re-created under the same name is live again: its tombstone is
	// dropped by NewTable's order (live Services are added last and win).
	return NewTableAt(a.Clock.Now(), svcs, eps, tombs, local), nil
}
