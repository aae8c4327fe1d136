package nlbpolicy

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// The deployer: the ordered writes that make the cluster hold exactly a
// Service's desired policies and network sets (apply), their removal
// (delete, deleteOwned), and what the controller owns (owned). The order is
// the promise: no intermediate state admits what neither the state before
// nor the one after admits.

// apply creates, updates and deletes so the cluster holds exactly the
// desired objects, in an order where no intermediate state admits what
// neither the state before nor the one after admits: network sets before the
// policies that select them; policies written and removed from the lowest
// order up (the Allow before the Deny behind it). Written the other way, a
// Deny ahead of its Allow refuses for a moment the listed sources of a
// Service whose flows already run (one adopted from the AWS Load Balancer
// Controller's rules), where an Allow alone refuses nothing new: the tier
// passes what it does not match. Unchanged objects are not written.
func (r *Reconciler) apply(ctx context.Context, out Output, policies []calicov3.GlobalNetworkPolicy, sets []calicov3.GlobalNetworkSet) (int, error) {
	writes := 0
	for _, want := range out.NetworkSets {
		var have client.Object
		if i := slices.IndexFunc(sets, func(s calicov3.GlobalNetworkSet) bool { return s.Name == want.Name }); i >= 0 {
			have = &sets[i]
		}
		wrote, err := r.ensure(ctx, want, have)
		if err != nil {
			return writes, err
		}
		writes += wrote
	}
	wanted := slices.Clone(out.Policies)
	slices.SortStableFunc(wanted, func(a, b *calicov3.GlobalNetworkPolicy) int { return cmp.Compare(order(a), order(b)) })
	for _, want := range wanted {
		var have client.Object
		if i := slices.IndexFunc(policies, func(p calicov3.GlobalNetworkPolicy) bool { return p.Name == want.Name }); i >= 0 {
			have = &policies[i]
		}
		wrote, err := r.ensure(ctx, want, have)
		if err != nil {
			return writes, err
		}
		writes += wrote
	}
	stalePolicies := slices.DeleteFunc(slices.Clone(policies), func(p calicov3.GlobalNetworkPolicy) bool {
		return slices.ContainsFunc(out.Policies, func(w *calicov3.GlobalNetworkPolicy) bool { return w.Name == p.Name })
	})
	staleSets := slices.DeleteFunc(slices.Clone(sets), func(s calicov3.GlobalNetworkSet) bool {
		return slices.ContainsFunc(out.NetworkSets, func(w *calicov3.GlobalNetworkSet) bool { return w.Name == s.Name })
	})
	deleted, err := r.delete(ctx, stalePolicies, staleSets, false)
	return writes + deleted, err
}

// delete removes generated objects in the closed order: policies from the
// lowest order up (an Allow before the Deny behind it), then network sets.
// denyFirst reverses the policies' order, for when another backend enforces
// the same sources behind them (a switch of backends): a Deny left alone
// for a moment would refuse the listed sources the other backend admits,
// where the Pass left alone refuses nothing the other backend does not.
func (r *Reconciler) delete(ctx context.Context, policies []calicov3.GlobalNetworkPolicy, sets []calicov3.GlobalNetworkSet, denyFirst bool) (int, error) {
	policies = slices.Clone(policies)
	slices.SortStableFunc(policies, func(a, b calicov3.GlobalNetworkPolicy) int { return cmp.Compare(order(&a), order(&b)) })
	if denyFirst {
		slices.Reverse(policies)
	}
	deleted := 0
	for i := range policies {
		if err := r.Client.Delete(ctx, &policies[i]); client.IgnoreNotFound(err) != nil {
			return deleted, fmt.Errorf("deleting GlobalNetworkPolicy %s: %w", policies[i].Name, err)
		}
		r.Metrics.write("GlobalNetworkPolicy", "delete")
		deleted++
	}
	for i := range sets {
		if err := r.Client.Delete(ctx, &sets[i]); client.IgnoreNotFound(err) != nil {
			return deleted, fmt.Errorf("deleting GlobalNetworkSet %s: %w", sets[i].Name, err)
		}
		r.Metrics.write("GlobalNetworkSet", "delete")
		deleted++
	}
	return deleted, nil
}

// order is a policy's order; none sorts last, as in Calico.
func order(p *calicov3.GlobalNetworkPolicy) float64 {
	if p.Spec.Order == nil {
		return math.Inf(1)
	}
	return *p.Spec.Order
}

// ensure makes the cluster hold want: have is the object as the cache sees
// it, nil when the cache has none. A create that finds the object already
// there means the cache is behind (the Service's own update arrived first):
// the live object is read and compared instead of failing the reconcile.
func (r *Reconciler) ensure(ctx context.Context, want, have client.Object) (int, error) {
	kind := kindOf(want)
	if have == nil && r.own.created(want) {
		// Created by this controller, not in the cache yet: read it.
		have = want.DeepCopyObject().(client.Object)
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(want), have); client.IgnoreNotFound(err) != nil {
			return 0, err
		} else if err != nil {
			have = nil // deleted since
		}
	}
	if have == nil {
		err := r.Client.Create(ctx, want)
		if err == nil {
			r.own.record("", want)
			r.Metrics.write(kind, "create")
			return 1, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
		have = want.DeepCopyObject().(client.Object)
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return 0, err
		}
	}
	if sameContent(have, want) {
		return 0, nil
	}
	want.SetResourceVersion(have.GetResourceVersion())
	if err := r.Client.Update(ctx, want); err != nil {
		return 0, err
	}
	r.own.record(have.GetResourceVersion(), want)
	r.Metrics.write(kind, "update")
	return 1, nil
}

// sameContent compares what the controller owns of a generated object: the
// whole spec (Desired sets what Calico's admission policies would default,
// so a hand edit of any field shows) and its own labels (others, such as
// ones a user adds, are left alone).
func sameContent(a, b client.Object) bool {
	for k, v := range b.GetLabels() {
		if got, ok := a.GetLabels()[k]; !ok || got != v {
			return false
		}
	}
	switch a := a.(type) {
	case *calicov3.GlobalNetworkPolicy:
		b, ok := b.(*calicov3.GlobalNetworkPolicy)
		return ok && equality.Semantic.DeepEqual(a.Spec, b.Spec)
	case *calicov3.GlobalNetworkSet:
		b, ok := b.(*calicov3.GlobalNetworkSet)
		return ok && equality.Semantic.DeepEqual(a.Spec, b.Spec)
	case *networkingv1.NetworkPolicy:
		// Its owner reference too: garbage collection is its clean-up.
		b, ok := b.(*networkingv1.NetworkPolicy)
		return ok && equality.Semantic.DeepEqual(a.Spec, b.Spec) && equality.Semantic.DeepEqual(a.OwnerReferences, b.OwnerReferences)
	}
	return false
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *calicov3.GlobalNetworkPolicy:
		return "GlobalNetworkPolicy"
	case *calicov3.GlobalNetworkSet:
		return "GlobalNetworkSet"
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy"
	}
	return "unknown"
}

// ownerField indexes the generated objects in the cache by their Service
// ("namespace/name", from their labels), so that finding a Service's
// objects does not scan every policy of the cluster in each reconcile (a
// quarter of the controller's CPU at 1,000 Services).
const ownerField = "nlbpolicy.owner"

func ownerOf(o client.Object) []string {
	l := o.GetLabels()
	if l[annotations.ManagedBy] != annotations.NLBPolicyManager || l[annotations.OwnerName] == "" {
		return nil
	}
	return []string{l[annotations.OwnerNamespace] + "/" + l[annotations.OwnerName]}
}

// owned lists the objects generated for a Service: by label, and by the
// names the controller gives them, so that an object whose labels were
// stripped by hand is never left behind (ahead of a later Service's Deny on
// a reused NodePort).
func (r *Reconciler) owned(ctx context.Context, namespace, name string) ([]calicov3.GlobalNetworkPolicy, []calicov3.GlobalNetworkSet, error) {
	sel := client.MatchingFields{ownerField: namespace + "/" + name}
	var policies calicov3.GlobalNetworkPolicyList
	if err := r.Client.List(ctx, &policies, sel); err != nil {
		return nil, nil, fmt.Errorf("listing the policies of %s/%s: %w", namespace, name, err)
	}
	var sets calicov3.GlobalNetworkSetList
	if err := r.Client.List(ctx, &sets, sel); err != nil {
		return nil, nil, fmt.Errorf("listing the network sets of %s/%s: %w", namespace, name, err)
	}
	base := BaseName(namespace, name)
	for _, suffix := range ObjectSuffixes {
		key := client.ObjectKey{Name: base + suffix}
		if suffix == suffixSources {
			set := calicov3.GlobalNetworkSet{}
			if err := r.Client.Get(ctx, key, &set); err == nil && !slices.ContainsFunc(sets.Items, func(o calicov3.GlobalNetworkSet) bool { return o.Name == key.Name }) {
				sets.Items = append(sets.Items, set)
			} else if client.IgnoreNotFound(err) != nil {
				return nil, nil, fmt.Errorf("reading network set %s: %w", key.Name, err)
			}
			continue
		}
		policy := calicov3.GlobalNetworkPolicy{}
		if err := r.Client.Get(ctx, key, &policy); err == nil && !slices.ContainsFunc(policies.Items, func(o calicov3.GlobalNetworkPolicy) bool { return o.Name == key.Name }) {
			policies.Items = append(policies.Items, policy)
		} else if client.IgnoreNotFound(err) != nil {
			return nil, nil, fmt.Errorf("reading policy %s: %w", key.Name, err)
		}
	}
	return policies.Items, sets.Items, nil
}
