// Package scenario writes the Kubernetes objects of the stale-UDP-conntrack
// scenario that the conntrack agent's tests, its benchmarks and the demo
// share: a UDP Service of type LoadBalancer, the load balancer's address
// written into its status late (as MetalLB or kube-vip do once they
// announce it), and its EndpointSlice as the EndpointSlice controller would
// write it. The network side (namespaces, senders, receivers) is netlab's.
package scenario

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// UDPService is one UDP Service of type LoadBalancer with one port,
// "flows", forwarded to PodPort on its pods.
type UDPService struct {
	Kube            kubernetes.Interface
	Namespace, Name string
	Port, PodPort   int32
	// Family is the Service's single IP family; "" leaves it to the
	// cluster (IPv4 here).
	Family corev1.IPFamily
}

// Create creates the Service, with no load-balancer address yet.
func (s UDPService) Create(ctx context.Context) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": s.Name},
			Ports: []corev1.ServicePort{{Name: "flows", Protocol: corev1.ProtocolUDP, Port: s.Port}}},
	}
	if s.Family != "" {
		svc.Spec.IPFamilies = []corev1.IPFamily{s.Family}
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
	}
	out, err := s.Kube.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return out, nil
}

// AssignLB writes the load balancer's address into the Service's status, as
// the load-balancer controller does (late, in the scenario: after the flow
// started).
func (s UDPService) AssignLB(ctx context.Context, svc *corev1.Service, ip netip.Addr) (*corev1.Service, error) {
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	out, err := s.Kube.CoreV1().Services(s.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("writing the LB address of Service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return out, nil
}

// Endpoints writes the Service's EndpointSlice with these ready pods (none:
// no endpoint), creating it or replacing its endpoints.
func (s UDPService) Endpoints(ctx context.Context, pods ...netip.Addr) error {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("flows"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(s.PodPort)}},
	}
	if s.Family == corev1.IPv6Protocol {
		slice.AddressType = discoveryv1.AddressTypeIPv6
	}
	for _, pod := range pods {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{pod.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	api := s.Kube.DiscoveryV1().EndpointSlices(s.Namespace)
	if cur, err := api.Get(ctx, slice.Name, metav1.GetOptions{}); err == nil {
		cur.Endpoints, cur.Ports = slice.Endpoints, slice.Ports
		if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating EndpointSlice %s/%s: %w", s.Namespace, slice.Name, err)
		}
		return nil
	}
	if _, err := api.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating EndpointSlice %s/%s: %w", s.Namespace, slice.Name, err)
	}
	return nil
}
