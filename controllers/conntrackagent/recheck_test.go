package conntrackagent

import (
	"testing"
	"time"
)

// The recheck set over a sequence of passes, without timers: passes add
// what they deleted, a recheck drops what came back NATed and what has been
// away for recheckPatience, the delay backs off after recheckSteady and is
// reset by a new deletion.
func TestRecheckSet(t *testing.T) {
	a := unNATed(exporter, lbFlows)
	b := unNATed(ap("192.0.2.51:40000"), ap("203.0.113.11:6344"))
	const first, limit = 100 * time.Millisecond, time.Second
	t0 := time.Unix(1000, 0)
	var r rechecks

	if _, ok := r.after(PassResult{}, false, t0, first, limit); ok {
		t.Fatal("a pass that deleted nothing started rechecks")
	}
	if d, ok := r.after(PassResult{DeletedFlows: []Flow{a}}, false, t0, first, limit); !ok || d != first {
		t.Fatalf("after a deleting pass: %v %v, want %v", d, ok, first)
	}
	// Another Service's pass adds its flow; a's stays.
	if _, ok := r.after(PassResult{DeletedFlows: []Flow{b}}, false, t0.Add(time.Second), first, limit); !ok || len(r.list()) != 2 {
		t.Fatalf("after a second Service's pass: %v", r.list())
	}
	// A pass with no deletions changes nothing.
	if d, ok := r.after(PassResult{}, false, t0.Add(time.Second), first, limit); !ok || d != first || len(r.list()) != 2 {
		t.Fatalf("after an empty pass: %v %v %v", d, ok, r.list())
	}
	// Past recheckSteady the delay doubles up to limit.
	now := t0.Add(time.Second + recheckSteady + time.Millisecond)
	var d time.Duration
	for range 6 {
		d, _ = r.after(PassResult{DeletedFlows: []Flow{a, b}}, true, now, first, limit)
	}
	if d != limit {
		t.Fatalf("delay after six deleting rechecks past recheckSteady: %v, want %v", d, limit)
	}
	// b comes back NATed: it leaves; a is missing and stays until
	// recheckPatience after its last deletion.
	if _, ok := r.after(PassResult{Settled: []Flow{b}, Missing: []Flow{a}}, true, now.Add(time.Second), first, limit); !ok || len(r.list()) != 1 || r.list()[0] != a {
		t.Fatalf("after b settled: %v", r.list())
	}
	if _, ok := r.after(PassResult{Missing: []Flow{a}}, true, now.Add(recheckPatience-time.Millisecond), first, limit); !ok {
		t.Fatal("a missing flow dropped before recheckPatience")
	}
	if _, ok := r.after(PassResult{Missing: []Flow{a}}, true, now.Add(recheckPatience), first, limit); ok || len(r.list()) != 0 {
		t.Fatalf("a flow missing for recheckPatience still rechecked: %v", r.list())
	}
	// Zero Recheck: no rechecks at all.
	var off rechecks
	if _, ok := off.after(PassResult{DeletedFlows: []Flow{a}}, false, t0, 0, limit); ok {
		t.Fatal("rechecks with Recheck 0")
	}
}
