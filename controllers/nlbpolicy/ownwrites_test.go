package nlbpolicy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func svcAt(rv string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{UID: "u1", ResourceVersion: rv}}
}

// TestOwnWritesSkipsOnlyOwnEvents: the event of the reconciler's own write
// is skipped once; an event that folds in someone else's change (it starts
// from another version, or ends at another) is not.
func TestOwnWritesSkipsOnlyOwnEvents(t *testing.T) {
	var w ownWrites
	p := w.predicate()
	update := func(from, to string) bool {
		return p.Update(event.UpdateEvent{ObjectOld: svcAt(from), ObjectNew: svcAt(to)})
	}

	w.record("10", svcAt("11"))
	if update("10", "11") {
		t.Error("the event of the reconciler's own write was not skipped")
	}
	if !update("10", "11") {
		t.Error("the same event seen twice was skipped twice")
	}

	// A merge patch applied on top of another's update: the watch shows the
	// other's change (10 -> 11), then the patch (11 -> 12), while the
	// reconciler patched from 10.
	w.record("10", svcAt("12"))
	if !update("10", "11") {
		t.Error("someone else's update was skipped")
	}
	if !update("11", "12") {
		t.Error("a write that landed on someone else's change was skipped")
	}

	// A relist that folds two changes into one event.
	w.record("20", svcAt("22"))
	if !update("19", "22") {
		t.Error("a folded event that holds another change was skipped")
	}

	// Creates: the object's first version.
	w.record("", svcAt("30"))
	if p.Create(event.CreateEvent{Object: svcAt("30")}) {
		t.Error("the event of the reconciler's own create was not skipped")
	}
	if !p.Create(event.CreateEvent{Object: svcAt("31")}) {
		t.Error("a create at another version was skipped")
	}
}
