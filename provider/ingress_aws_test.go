package provider

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// TestOwns: a group is the ingress's only with its ingress tag, the product's
// managed-by tag and this cluster's identity; another cluster's group for a
// namespace/name of the same spelling is never taken.
func TestOwns(t *testing.T) {
	group := func(tags map[string]string) ec2types.SecurityGroup {
		var g ec2types.SecurityGroup
		for k, v := range tags {
			g.Tags = append(g.Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		return g
	}
	ours := map[string]string{annotations.IngressTag: "telemetry/flows", annotations.ManagedBy: annotations.ProviderManager,
		annotations.ClusterTag: "uid-a"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for key, val := range ours {
			m[key] = val
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	a := ingressAWS{cluster: "uid-a"}
	o := ruleOwner("telemetry", "flows")
	for _, tc := range []struct {
		name          string
		tags          map[string]string
		owned, legacy bool
	}{
		{"this ingress in this cluster", ours, true, false},
		{"the same ingress name in another cluster", with(annotations.ClusterTag, "uid-b"), false, false},
		{"another ingress", with(annotations.IngressTag, "telemetry/other"), false, false},
		{"hand-made, no tags", map[string]string{}, false, false},
		{"tagged by hand without the managed-by tag", with(annotations.ManagedBy, ""), false, false},
		{"created before groups carried the cluster", with(annotations.ClusterTag, ""), false, true},
	} {
		owned, legacy := a.owns(group(tc.tags), o)
		if owned != tc.owned || legacy != tc.legacy {
			t.Errorf("%s: owned %v legacy %v, want %v %v", tc.name, owned, legacy, tc.owned, tc.legacy)
		}
	}
}

// A refused DescribeSubnets is an error the caller reports (a warning on the
// per-source figure), not zero subnets said as if counted: it used to be
// swallowed, and the figure silently left out the health-check rules.
func TestTaggedSubnetCountReportsAWSErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>no</Message></Error></Errors></Response>`))
	}))
	defer srv.Close()
	client := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), RetryMaxAttempts: 1})
	n, err := ingressAWS{ec2: client}.taggedSubnetCount(context.Background(), "vpc-1", "internet-facing")
	if err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Fatalf("taggedSubnetCount = %d, %v; want the AWS error", n, err)
	}
}
