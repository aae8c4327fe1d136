package conntrackagent

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// The agent's view of the cluster: informers on Services and EndpointSlices,
// whose changes trigger passes (triggers.go decides which), restarted fresh
// after an API server outage (apiwatch.go).

// startInformers starts a fresh set of informers, waits for their caches
// and then puts their listers in place of the previous set's, which it
// stops. After an API server outage this is what makes the agent see the
// cluster again at once: the old informers would come back only when their
// backoff (up to 30 s) ends.
func (a *Agent) startInformers(ctx context.Context) error {
	ictx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(a.Client, 0)
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	// Adds of the initial list trigger nothing: the start pass (or the pass
	// after a restart) covers them.
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			a.sourcesAcknowledged(o)
			if hasUDP(o) && !initial {
				a.stateChanged()
				a.kick("service added", serviceKey(o))
			}
		},
		UpdateFunc: func(old, cur any) {
			a.sourcesAcknowledged(cur)
			if serviceAddressesChanged(old, cur) {
				a.stateChanged()
				a.kick("service addresses changed", serviceKey(cur))
			}
		},
		DeleteFunc: func(o any) { a.forgetSources(o); a.serviceDeleted(o) },
	}); err != nil {
		cancel()
		return err
	}
	if _, err := sliceInformer.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			if sliceAddedNeedsPass(o) && !initial {
				a.kick("endpoints added", sliceServiceKey(o))
			}
		},
		UpdateFunc: func(old, cur any) {
			if endpointsNeedPass(old, cur) {
				a.kick("endpoints changed", sliceServiceKey(cur))
			}
		},
		DeleteFunc: func(o any) {
			if sliceDeletedNeedsPass(o) {
				a.kick("endpoints removed", sliceServiceKey(o))
			}
		},
	}); err != nil {
		cancel()
		return err
	}
	factory.Start(ictx.Done())
	for typ, ok := range factory.WaitForCacheSync(ictx.Done()) {
		if !ok {
			cancel()
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	a.mu.Lock()
	stopOld := a.stopInformers
	a.services, a.slices, a.stopInformers = svcInformer.Lister(), sliceInformer.Lister(), cancel
	a.mu.Unlock()
	if stopOld != nil {
		stopOld()
	}
	return nil
}

// listers are the current informers' listers.
func (a *Agent) listers() (corelisters.ServiceLister, discoverylisters.EndpointSliceLister) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.services, a.slices
}

// serviceDeleted remembers a deleted UDP Service's addresses: entries still
// pinned to it are removed (kube-proxy leaves them).
func (a *Agent) serviceDeleted(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	svc, ok := o.(*corev1.Service)
	if !ok || !hasUDP(svc) {
		return
	}
	t := a.tombstone(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, udpAddrs(svc), a.Clock.Now())
	a.mu.Lock()
	a.tombs[t.Service] = t
	a.mu.Unlock()
	a.stateChanged()
	a.passAtGraceEnd(t, a.Clock.Now())
}
