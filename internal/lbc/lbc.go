// Package lbc captures what this product relies on of the AWS Load Balancer
// Controller (kubernetes-sigs/aws-load-balancer-controller): which Services
// it turns into NLBs, the annotations that steer it, and how many
// security-group rules it writes when left to manage them itself.
package lbc

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ServiceFinalizer holds a Service until the controller has deleted its NLB.
const ServiceFinalizer = "service.k8s.aws/resources"

// LoadBalancerClass is the spec.loadBalancerClass the controller claims.
const LoadBalancerClass = "service.k8s.aws/nlb"

// StackTag is the tag the controller puts on a Service's load balancer,
// valued "<namespace>/<name>".
const StackTag = "service.k8s.aws/stack"

// StackNameLabel and StackNamespaceLabel are the labels the controller puts
// on the Kubernetes objects it makes for a Service (its
// TargetGroupBindings).
const (
	StackNameLabel      = "service.k8s.aws/stack-name"
	StackNamespaceLabel = "service.k8s.aws/stack-namespace"
)

// TargetGroupBindingList is the kind of a list of the controller's
// TargetGroupBindings: which target group a Service's port feeds and, in
// spec.networking, the node-group rules the controller manages for it.
var TargetGroupBindingList = schema.GroupVersionKind{Group: "elbv2.k8s.aws", Version: "v1beta1", Kind: "TargetGroupBindingList"}

// Service annotations.
const (
	annPrefix = "service.beta.kubernetes.io/"

	Type                           = annPrefix + "aws-load-balancer-type"
	NLBTargetType                  = annPrefix + "aws-load-balancer-nlb-target-type"
	Scheme                         = annPrefix + "aws-load-balancer-scheme"
	TargetGroupAttributes          = annPrefix + "aws-load-balancer-target-group-attributes"
	Subnets                        = annPrefix + "aws-load-balancer-subnets"
	SecurityGroups                 = annPrefix + "aws-load-balancer-security-groups"
	ManageBackendSecurityGroupRule = annPrefix + "aws-load-balancer-manage-backend-security-group-rules"
	// DisableNLBSecurityGroup ("true") makes the controller (v2.14+) create
	// the NLB without a security group of its own.
	DisableNLBSecurityGroup = annPrefix + "aws-load-balancer-disable-nlb-sg"
	IPAddressType           = annPrefix + "aws-load-balancer-ip-address-type"
	// SourceRanges is the fallback when spec.loadBalancerSourceRanges is empty.
	SourceRanges = annPrefix + "load-balancer-source-ranges"
)

// Values.
const (
	TypeExternal = "external"
	TypeNLBIP    = "nlb-ip"

	TargetInstance = "instance"
	TargetIP       = "ip"

	SchemeInternal       = "internal"
	SchemeInternetFacing = "internet-facing"

	PreserveClientIP = "preserve_client_ip.enabled=true"

	IPAddressTypeDualStack = "dualstack"

	// RuleDescription marks the rules the controller writes itself.
	RuleDescription = "elbv2.k8s.aws/targetGroupBinding=shared"
)

// IsNLB reports whether the controller provisions an NLB for the Service.
func IsNLB(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if c := svc.Spec.LoadBalancerClass; c != nil {
		return *c == LoadBalancerClass
	}
	t := svc.Annotations[Type]
	return t == TypeExternal || t == TypeNLBIP
}

// TargetType is "ip" or "instance" (the default; "nlb-ip" implies ip).
func TargetType(svc *corev1.Service) string {
	if svc.Annotations[Type] == TypeNLBIP {
		return TargetIP
	}
	if strings.TrimSpace(svc.Annotations[NLBTargetType]) == TargetIP {
		return TargetIP
	}
	return TargetInstance
}

// SchemeOf is "internal" (the default) or "internet-facing".
func SchemeOf(svc *corev1.Service) string {
	if strings.TrimSpace(svc.Annotations[Scheme]) == SchemeInternetFacing {
		return SchemeInternetFacing
	}
	return SchemeInternal
}

// SourceRanges are spec.loadBalancerSourceRanges, or the annotation's
// comma-separated list when the spec has none; raw, not validated.
func SourceRangesOf(svc *corev1.Service) []string {
	if len(svc.Spec.LoadBalancerSourceRanges) > 0 {
		return svc.Spec.LoadBalancerSourceRanges
	}
	return SplitList(svc.Annotations[SourceRanges])
}

// BackendRulesManaged reports whether the controller writes per-source rules
// for the Service (true unless the annotation says "false", or a frontend
// security group is brought, which turns the default to false).
func BackendRulesManaged(svc *corev1.Service) bool {
	if v, ok := svc.Annotations[ManageBackendSecurityGroupRule]; ok {
		return strings.TrimSpace(v) != "false"
	}
	return svc.Annotations[SecurityGroups] == ""
}

// SplitList splits a comma-separated annotation value, dropping blanks.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// PerSourceRules is how many inbound security-group rules the controller
// writes for one NLB Service when it manages them itself: one per source
// CIDR per listener port and protocol (TCP_UDP counts twice), plus one per
// NLB subnet per port for health checks. AWS allows 60 per group by default.
func PerSourceRules(sources int, portProtocols []int, subnets int) int {
	rules := 0
	for _, protocols := range portProtocols {
		rules += sources*protocols + subnets
	}
	return rules
}

// DefaultRulesPerSecurityGroup is AWS's default quota of inbound rules per
// security group.
const DefaultRulesPerSecurityGroup = 60
