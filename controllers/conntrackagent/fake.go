package conntrackagent

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
)

// Fake is an in-memory conntrack table for tests of the agent's logic
// (scheduling, counting, dry run) without root, as kube-proxy's
// pkg/proxy/conntrack has its fake. It models what the agent relies on:
// entries keyed by their original tuple, a deletion of a missing entry
// answered ENOENT (Vanished), and a deletion the kernel refuses (Failed).
type Fake struct {
	mu      sync.Mutex
	entries map[tupleKey]Flow
	// Refuse, when set, makes the kernel refuse the deletion of the flows
	// for which it returns true.
	Refuse func(Flow) bool
	// AfterDelete, when set, is called (without the lock) with each flow the
	// fake deleted: a test re-creates the entry the next packet of a constant
	// flow would create (Add), NATed or not, as kube-proxy's rules say.
	AfterDelete func(Flow)
	// Scans and DeleteCalls count the calls; Filters are each scan's.
	Scans, Lookups, DeleteCalls int
	Filters                     [][]Filter

	watchers []fakeWatch
}

type fakeWatch struct {
	fn   func(Flow, bool)
	lost func()
}

// ErrFakeRefused is the error of a Delete in which Refuse refused some.
var ErrFakeRefused = errors.New("operation not permitted (fake)")

// Add creates or replaces an entry.
func (c *Fake) Add(flows ...Flow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[tupleKey]Flow{}
	}
	for _, f := range flows {
		c.entries[keyOf(f)] = f
	}
	c.notify(flows, false)
}

// notify sends events to the watchers (with the lock held: in the
// kernel's order).
func (c *Fake) notify(flows []Flow, destroyed bool) {
	for _, w := range c.watchers {
		for _, f := range flows {
			if f.Proto == protoUDP {
				w.fn(f, destroyed)
			}
		}
	}
}

// Watch implements Watcher.
func (c *Fake) Watch(ctx context.Context, fn func(Flow, bool), lost func()) (<-chan error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchers = append(c.watchers, fakeWatch{fn, lost})
	i := len(c.watchers) - 1
	errc := make(chan error, 1)
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		c.watchers[i] = fakeWatch{fn: func(Flow, bool) {}, lost: func() {}}
		c.mu.Unlock()
		errc <- nil
	}()
	return errc, nil
}

// LoseEvents tells the watchers that events were dropped, as the kernel
// does when a socket's buffer overflows.
func (c *Fake) LoseEvents() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watchers {
		w.lost()
	}
}

// Expire removes an entry without an event (as if the event were lost).
func (c *Fake) Expire(f Flow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, keyOf(f))
}

// Flows lists the entries, sorted by original source.
func (c *Fake) Flows() []Flow {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Flow, 0, len(c.entries))
	for _, f := range c.entries {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OrigSrc.String() < out[j].OrigSrc.String() })
	return out
}

// Scan is ScanProtocol for UDP.
func (c *Fake) Scan(ctx context.Context, fn func(Flow)) (ScanStats, error) {
	return c.ScanProtocol(ctx, protoUDP, fn)
}

// ScanProtocol is ScanFiltered for one protocol.
func (c *Fake) ScanProtocol(ctx context.Context, proto uint8, fn func(Flow)) (ScanStats, error) {
	return c.ScanFiltered(ctx, []Filter{{Proto: proto}}, fn)
}

// ScanFiltered implements Conntrack; Filters records the filters asked for.
func (c *Fake) ScanFiltered(ctx context.Context, filters []Filter, fn func(Flow)) (ScanStats, error) {
	c.mu.Lock()
	c.Scans++
	c.Filters = append(c.Filters, filters)
	var flows []Flow
	for _, f := range c.entries {
		if slices.ContainsFunc(filters, func(fl Filter) bool { return fl.match(f) }) {
			flows = append(flows, f)
		}
	}
	c.mu.Unlock()
	for _, f := range flows {
		fn(f)
	}
	return ScanStats{Scanned: len(flows), Filter: true}, ctx.Err()
}

// Lookup implements Conntrack.
func (c *Fake) Lookup(ctx context.Context, flows []Flow) ([]Flow, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Lookups++
	var out []Flow
	for _, f := range flows {
		if cur, ok := c.entries[keyOf(f)]; ok {
			out = append(out, cur)
		}
	}
	return out, ctx.Err()
}

// Delete implements Conntrack.
func (c *Fake) Delete(ctx context.Context, flows []Flow) ([]Outcome, error) {
	out := make([]Outcome, len(flows))
	var deleted []Flow
	c.mu.Lock()
	c.DeleteCalls++
	for i, f := range flows {
		_, ok := c.entries[keyOf(f)]
		switch {
		case !ok:
			out[i] = Vanished
		case c.Refuse != nil && c.Refuse(f):
			out[i] = Failed
		default:
			delete(c.entries, keyOf(f))
			out[i] = Deleted
			deleted = append(deleted, f)
		}
	}
	c.notify(deleted, true)
	after := c.AfterDelete
	c.mu.Unlock()
	if after != nil {
		for _, f := range deleted {
			after(f)
		}
	}
	if Tally(out).Failed > 0 {
		return out, ErrFakeRefused
	}
	return out, ctx.Err()
}
