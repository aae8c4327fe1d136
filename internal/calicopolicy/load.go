package calicopolicy

import (
	"context"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Load reads the GlobalNetworkPolicies and GlobalNetworkSets that match the
// options, in the form Evaluate takes.
func Load(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]*calicov3.GlobalNetworkPolicy, []*calicov3.GlobalNetworkSet, error) {
	var pl calicov3.GlobalNetworkPolicyList
	if err := c.List(ctx, &pl, opts...); err != nil {
		return nil, nil, err
	}
	var sl calicov3.GlobalNetworkSetList
	if err := c.List(ctx, &sl, opts...); err != nil {
		return nil, nil, err
	}
	ps := make([]*calicov3.GlobalNetworkPolicy, len(pl.Items))
	for i := range pl.Items {
		ps[i] = &pl.Items[i]
	}
	ss := make([]*calicov3.GlobalNetworkSet, len(sl.Items))
	for i := range sl.Items {
		ss[i] = &sl.Items[i]
	}
	return ps, ss, nil
}
