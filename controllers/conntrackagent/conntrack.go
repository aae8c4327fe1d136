package conntrackagent

import (
	"context"
	"net/netip"
)

// Conntrack is what the agent needs of a node's conntrack table: Netlink in
// production, Fake in tests of the agent's scheduling (no root needed).
type Conntrack interface {
	// ScanFiltered streams the table's entries that match any of the
	// (disjoint) filters through fn.
	ScanFiltered(ctx context.Context, filters []Filter, fn func(Flow)) (ScanStats, error)
	// Lookup returns the current entries with these original tuples (those
	// that exist), read one by one: O(len(flows)), not a table walk.
	Lookup(ctx context.Context, flows []Flow) ([]Flow, error)
	// Delete deletes entries by their original tuple and returns what the
	// kernel did with each, in the order given.
	Delete(ctx context.Context, flows []Flow) ([]Outcome, error)
}

// Outcome is what became of one entry the agent asked to delete.
type Outcome uint8

const (
	// NotTried: the deletion was cut short (context ended, no socket).
	NotTried Outcome = iota
	// Deleted: the kernel deleted the entry.
	Deleted
	// Vanished: the entry was gone already (timed out, deleted by kube-proxy).
	Vanished
	// Failed: the kernel refused the deletion.
	Failed
)

// DeleteStats tally outcomes.
type DeleteStats struct {
	Deleted, Vanished, Failed int
}

func (s *DeleteStats) add(o Outcome) {
	switch o {
	case Deleted:
		s.Deleted++
	case Vanished:
		s.Vanished++
	default:
		s.Failed++
	}
}

// Tally counts outcomes; NotTried counts as Failed.
func Tally(outcomes []Outcome) DeleteStats {
	var s DeleteStats
	for _, o := range outcomes {
		s.add(o)
	}
	return s
}

// tupleKey is an entry's identity in the kernel: its original tuple.
type tupleKey struct {
	proto    uint8
	src, dst netip.AddrPort
}

func keyOf(f Flow) tupleKey { return tupleKey{f.Proto, f.OrigSrc, f.OrigDst} }

// Watcher is a Conntrack that also reports UDP entries as the kernel
// creates (confirms) and destroys them: ctnetlink's event groups. The agent
// keeps an index from them, so a pass triggered by one Service reads that
// Service's entries from memory instead of making the kernel walk its whole
// table (index.go).
type Watcher interface {
	// Watch subscribes, then returns: every event after it returns reaches
	// fn, in the kernel's order. lost is called when the kernel dropped
	// events (the socket's buffer overflowed): what fn saw is incomplete.
	// The channel gets the error that ended the watch (nil when ctx ended).
	Watch(ctx context.Context, fn func(f Flow, destroyed bool), lost func()) (<-chan error, error)
}
