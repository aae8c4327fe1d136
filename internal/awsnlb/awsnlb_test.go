package awsnlb

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func TestNameFromDNS(t *testing.T) {
	for dns, want := range map[string]string{
		"k8s-telemetr-flows-0123456789-0123456789abcdef.elb.eu-west-1.amazonaws.com":   "k8s-telemetr-flows-0123456789",
		"internal-k8s-telemetr-flows-0a1b2c3d4e-123456789.elb.us-east-1.amazonaws.com": "k8s-telemetr-flows-0a1b2c3d4e",
		"flows-1.us-east-1.elb.amazonaws.com":                                          "flows", // moto
		"nodash.elb.amazonaws.com":                                                     "",
		"":                                                                             "",
	} {
		got, ok := NameFromDNS(dns)
		if got != want || ok != (want != "") {
			t.Errorf("NameFromDNS(%q) = %q, %v; want %q", dns, got, ok, want)
		}
	}
}

// InboundRules counts as AWS's quota does: every source of every
// permission, prefix lists included (the demo's count once missed them).
func TestInboundRules(t *testing.T) {
	perms := []ec2types.IpPermission{
		{IpRanges: []ec2types.IpRange{{CidrIp: aws.String("192.0.2.0/24")}, {CidrIp: aws.String("198.51.100.0/24")}},
			Ipv6Ranges: []ec2types.Ipv6Range{{CidrIpv6: aws.String("2001:db8::/48")}}},
		{UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String("sg-1")}},
			PrefixListIds: []ec2types.PrefixListId{{PrefixListId: aws.String("pl-1")}, {PrefixListId: aws.String("pl-2")}}},
	}
	if got := InboundRules(perms); got != 6 {
		t.Fatalf("InboundRules = %d, want 6", got)
	}
}
