// Package ack is the acknowledgement the nlb-policy controller writes on a
// Service once Calico policies for its current sources and ports are in
// place, and that telemetry_nlb_ingress waits for before it reports success
// or widens anything in AWS. Without it nothing would tell a user that the
// controller is missing, crash-looping or refused, while the NLB admits
// whatever its security groups let through.
//
// Both sides compute Digest from the same Service, so an acknowledgement
// for an older spec (sources, ports, NodePorts, targets) never counts.
package ack

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// Ack is the value of annotations.Enforced, as JSON.
type Ack struct {
	// Digest is Digest(svc) of the Service whose policies are in place;
	// empty when the controller could not enforce them (see Problem).
	Digest string `json:"digest"`
	// Policies are the names of the objects enforcing it: GlobalNetworkPolicies,
	// or a NetworkPolicy of the Service's namespace.
	Policies []string `json:"policies,omitempty"`
	// Time is when the controller last changed the acknowledgement.
	Time time.Time `json:"time"`
	// Problem says what is wrong: invalid input left out (with a Digest), or
	// why nothing is enforced (without one).
	Problem string `json:"problem,omitempty"`
	// Refused is the Digest of a spec the controller refuses until something
	// changes (a backend not allowed, another NetworkPolicy beside its own, a
	// namespace not served): an apply waiting for this spec fails at once
	// with Problem instead of at its timeout. Empty for what may resolve by
	// itself (waiting for a NodePort, AWS not answering).
	Refused string `json:"refused,omitempty"`
}

// Digest is a hash of what the policies of a Service depend on: its valid
// source ranges (aggregated), ports with their NodePorts and target ports,
// health-check NodePort, target type, pod selector, host-endpoint selector
// override and policy backend.
func Digest(svc *corev1.Service) string {
	sources, _ := cidrset.Parse(lbc.SourceRangesOf(svc))
	type port struct {
		Protocol       corev1.Protocol
		Port, NodePort int32
		TargetPort     string
	}
	var ports []port
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		ports = append(ports, port{Protocol: proto, Port: p.Port, NodePort: p.NodePort, TargetPort: p.TargetPort.String()})
	}
	slices.SortFunc(ports, func(a, b port) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	canonical, _ := json.Marshal(struct {
		Sources             []string
		Ports               []port
		HealthCheckNodePort int32
		TargetType          string
		Selector            []string
		HostEndpoints       string
		// Backend is the Service's choice of policy backend, when it makes
		// one (absent, the digest is what it was before backends existed).
		Backend string `json:",omitempty"`
	}{
		Sources: sources.Strings(), Ports: ports, HealthCheckNodePort: svc.Spec.HealthCheckNodePort,
		TargetType: lbc.TargetType(svc), Selector: selectorPairs(svc.Spec.Selector),
		HostEndpoints: svc.Annotations[annotations.HostEndpointSelector],
		Backend:       svc.Annotations[annotations.PolicyBackend],
	})
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// Of reads the acknowledgement on a Service; ok is false when there is none
// or it cannot be parsed.
func Of(svc *corev1.Service) (a Ack, ok bool) {
	raw, found := svc.Annotations[annotations.Enforced]
	if !found || json.Unmarshal([]byte(raw), &a) != nil {
		return Ack{}, false
	}
	return a, true
}

// Current reports whether the Service carries an acknowledgement of its
// current spec.
func Current(svc *corev1.Service) bool {
	a, ok := Of(svc)
	return ok && a.Digest != "" && a.Digest == Digest(svc)
}

// RefusedNow reports whether the controller refuses the Service's current
// spec, and why.
func RefusedNow(svc *corev1.Service) (string, bool) {
	a, ok := Of(svc)
	if !ok || a.Refused == "" || a.Refused != Digest(svc) {
		return "", false
	}
	return a.Problem, true
}

// Same reports whether two acknowledgements say the same, whatever their
// times, so the controller writes only when something changed.
func Same(a, b Ack) bool {
	return a.Digest == b.Digest && a.Problem == b.Problem && a.Refused == b.Refused && slices.Equal(a.Policies, b.Policies)
}

// Encode renders the annotation's value.
func (a Ack) Encode() string {
	out, _ := json.Marshal(a)
	return string(out)
}

func selectorPairs(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}
