package nlbpolicy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// ErrNoRegion: the controller cannot tell which region its NLBs are in.
var ErrNoRegion = errors.New("no AWS region")

// LoadAWSConfig is the controller's AWS configuration: credentials and
// region from the standard chain (AWS_REGION, which IRSA's webhook sets, or
// the shared config), else the region of the node it runs on, from the
// instance metadata service. No region at all is an error rather than a
// default: in the wrong region the controller finds no NLB, acknowledges
// nothing, and every apply times out. endpoint, when set, replaces AWS's
// (an emulator, a VPC endpoint).
func LoadAWSConfig(ctx context.Context, endpoint string) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return cfg, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := imds.NewFromConfig(cfg).GetRegion(ictx, &imds.GetRegionInput{})
		if err != nil || out.Region == "" {
			return cfg, fmt.Errorf("%w: set AWS_REGION (the Helm chart's nlbPolicyController.aws.region), or let the pod reach the "+
				"instance metadata service (IMDSv2 with a hop limit of 2), or run with --aws=false and --health-check-cidrs "+
				"(the instance metadata service: %v)", ErrNoRegion, err)
		}
		cfg.Region = out.Region
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return cfg, nil
}
