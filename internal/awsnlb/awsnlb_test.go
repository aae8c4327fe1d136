package awsnlb

import "testing"

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
