package nlbpolicy

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// ownWrites remembers, for each object the reconciler last wrote, the
// resourceVersion it had before the write and the one the write produced,
// so that the watch event of that write is not reconciled again: the
// reconcile that wrote it already acted on everything it holds. Without it
// a cold start reconciled each Service four to five times (the finalizer
// patch, three creates, the acknowledgement), and the reconciles right after
// a write read a cache that did not have the write yet and sent creates the
// API server refused as existing (325 of 3,000 in the 1,000-Service
// benchmark, each through Calico's admission).
//
// An event is skipped only when it goes from exactly the version the write
// started from to exactly the one it made, so a change by someone else is
// never hidden: a merge patch applied on top of another's update, or a watch
// that relisted and folded several changes into one event, has a different
// old version and is reconciled.
type ownWrites struct {
	mu sync.Mutex
	by map[types.UID]ownWrite
	// unseen are the objects created (by kind and name) whose create the
	// cache has not shown yet: a reconcile that does not find one in the
	// cache reads it from the API server instead of creating it again (on a
	// loaded API server the watch lags by seconds; 341 creates of 3,000 were
	// refused as existing in the benchmark, each through Calico's admission).
	unseen map[string]struct{}
}

type ownWrite struct{ from, to string }

// record notes a write: from is the object's resourceVersion before it (""
// for a create), o the object as the API server returned it.
func (w *ownWrites) record(from string, o client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.by == nil {
		w.by = map[types.UID]ownWrite{}
		w.unseen = map[string]struct{}{}
	}
	w.by[o.GetUID()] = ownWrite{from: from, to: o.GetResourceVersion()}
	if from == "" {
		w.unseen[nameOf(o)] = struct{}{}
	}
}

// created reports that the reconciler created the object and the cache has
// not shown it yet.
func (w *ownWrites) created(o client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.unseen[nameOf(o)]
	return ok
}

// seen notes that the cache holds the object.
func (w *ownWrites) seen(o client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.unseen, nameOf(o))
}

func nameOf(o client.Object) string { return kindOf(o) + "/" + o.GetName() }

// own reports (once) whether a change from the version from to the object o
// is the reconciler's last write to it.
func (w *ownWrites) own(from string, o client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	got, ok := w.by[o.GetUID()]
	if !ok || got.to != o.GetResourceVersion() {
		return false
	}
	delete(w.by, o.GetUID())
	return got.from == from
}

// forget drops what is remembered of a deleted object.
func (w *ownWrites) forget(o client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.by, o.GetUID())
	delete(w.unseen, nameOf(o))
}

// predicate filters out the events of the reconciler's own writes.
func (w *ownWrites) predicate() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { w.seen(e.Object); return !w.own("", e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return !w.own(e.ObjectOld.GetResourceVersion(), e.ObjectNew) },
		DeleteFunc: func(e event.DeleteEvent) bool { w.forget(e.Object); return true },
	}
}
