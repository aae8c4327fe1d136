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

// Version is the version of the acknowledgement this build writes and
// reads: its format and how Digest is computed. A provider and a controller
// of different releases meet on a Service only when they speak the same
// version; one that meets another version says so at once (Compatible),
// naming both, instead of waiting for an acknowledgement that can never
// match. An acknowledgement without a version is version 1 (releases before
// versioning computed the same digest). Bump it with any change to Digest
// or to the meaning of a field, and say so in CHANGELOG.md and VERSIONING.md.
const Version = 1

// Ack is the value of annotations.Enforced, as JSON.
type Ack struct {
	// V is the version the controller wrote it in (Version); 0 reads as 1.
	V int `json:"v,omitempty"`
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
	return a.version() == b.version() && a.Digest == b.Digest && a.Problem == b.Problem && a.Refused == b.Refused &&
		slices.Equal(a.Policies, b.Policies)
}

func (a Ack) version() int {
	if a.V == 0 {
		return 1
	}
	return a.V
}

// Compatible says, when the Service carries an acknowledgement of another
// version than this build's, that the two cannot agree and which to
// upgrade; nil otherwise (none, or the same version).
func Compatible(svc *corev1.Service) error {
	a, ok := Of(svc)
	if !ok || a.version() == Version {
		return nil
	}
	newer := "the provider"
	if a.version() < Version {
		newer = "the nlb-policy controller (the Helm chart)"
	}
	return fmt.Errorf("the nlb-policy controller writes acknowledgements of version %d on Service %s/%s, and this provider "+
		"reads version %d: the two are of releases that cannot agree on what is enforced; upgrade %s to the other's "+
		"release (VERSIONING.md lists which go together)", a.version(), svc.Namespace, svc.Name, Version, newer)
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
