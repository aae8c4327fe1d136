package provider

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// TestAWSValidationNamesTheCause: an AWS endpoint that does not answer is
// said to be one (the credentials were never looked at), not reported as a
// credentials problem to skip.
func TestAWSValidationNamesTheCause(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // a port that is then closed: nothing answers there
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close()
	s := &awsSettings{validateCredentials: true, sts: endpoint, cfg: aws.Config{Region: "us-east-1", RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}}
	err = s.validate(context.Background())
	if err == nil {
		t.Fatal("validated against an endpoint that does not answer")
	}
	if msg := err.Error(); !strings.Contains(msg, "no answer from AWS") || !strings.Contains(msg, endpoint) ||
		strings.Contains(msg, "skip_credentials_validation") {
		t.Errorf("an endpoint that does not answer reported as: %s", msg)
	}
}
