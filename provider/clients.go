package provider

import (
	"context"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// clients builds the Kubernetes and AWS clients on first use, not at
// Configure: validate and plan never call an API, and provider values that
// are unknown at plan time (a cluster created in the same run) are fine.
type clients struct {
	kubeModel *kubernetesModel
	awsModel  *awsModel
	userAgent string

	kubeOnce  sync.Once
	kube      client.Client
	discovery discovery.DiscoveryInterface
	restCfg   *rest.Config
	kubeErr   error

	awsOnce sync.Once
	aws     *awsSettings
	awsErr  error

	// topicVersion is the KafkaTopic version found served, asked once per
	// run (a terraform operation is one provider process) instead of once
	// per site: 100 sites made 100 discovery requests. Only a version found
	// is kept, so an apply that installs Strimzi before its sites still
	// asks again.
	topicMu      sync.Mutex
	topicVersion string
}

// kafkaTopicVersion is servedKafkaTopicVersion, remembered once found.
func (c *clients) kafkaTopicVersion(d discovery.DiscoveryInterface) (string, error) {
	c.topicMu.Lock()
	defer c.topicMu.Unlock()
	if c.topicVersion != "" {
		return c.topicVersion, nil
	}
	v, err := servedKafkaTopicVersion(d)
	if err == nil {
		c.topicVersion = v
	}
	return v, err
}

func newClients(k *kubernetesModel, a *awsModel, version string) *clients {
	return &clients{kubeModel: k, awsModel: a, userAgent: "terraform-provider-telemetry/" + version}
}

// Kube returns a client for the Kubernetes types the provider uses.
func (c *clients) Kube() (client.Client, discovery.DiscoveryInterface, error) {
	c.kubeOnce.Do(func() {
		if c.restCfg, c.kubeErr = c.kubeModel.restConfig(c.userAgent); c.kubeErr != nil {
			return
		}
		if c.kube, c.kubeErr = client.New(c.restCfg, client.Options{Scheme: kubeapi.Scheme()}); c.kubeErr != nil {
			c.kubeErr = fmt.Errorf("creating the Kubernetes client: %w", c.kubeErr)
			return
		}
		c.discovery, c.kubeErr = discovery.NewDiscoveryClientForConfig(c.restCfg)
	})
	return c.kube, c.discovery, c.kubeErr
}

// kubeOrDiag is Kube for resources: an error becomes a diagnostic.
func (c *clients) kubeOrDiag(diags *diag.Diagnostics) (client.Client, discovery.DiscoveryInterface, bool) {
	if c == nil {
		diags.AddError("Provider not configured", "the telemetry provider was not configured")
		return nil, nil, false
	}
	kc, disco, err := c.Kube()
	if err != nil {
		diags.AddError("Kubernetes configuration", err.Error())
		return nil, nil, false
	}
	return kc, disco, true
}

// AWS returns the resolved AWS configuration, credentials validated once.
func (c *clients) AWS(ctx context.Context) (*awsSettings, error) {
	c.awsOnce.Do(func() {
		if c.aws, c.awsErr = c.awsModel.settings(ctx, c.userAgent); c.awsErr != nil {
			return
		}
		c.awsErr = c.aws.validate(ctx)
	})
	return c.aws, c.awsErr
}

// EC2 returns an EC2 client honouring aws.endpoints.ec2.
func (c *clients) EC2(ctx context.Context) (*ec2.Client, error) {
	s, err := c.AWS(ctx)
	if err != nil {
		return nil, err
	}
	return ec2.NewFromConfig(s.cfg, func(o *ec2.Options) {
		if s.ec2 != "" {
			o.BaseEndpoint = aws.String(s.ec2)
		}
	}), nil
}

// ELBv2 returns an Elastic Load Balancing v2 client honouring aws.endpoints.elbv2.
func (c *clients) ELBv2(ctx context.Context) (*elbv2.Client, error) {
	s, err := c.AWS(ctx)
	if err != nil {
		return nil, err
	}
	return elbv2.NewFromConfig(s.cfg, func(o *elbv2.Options) {
		if s.elbv2 != "" {
			o.BaseEndpoint = aws.String(s.elbv2)
		}
	}), nil
}

// clientsFrom unpacks provider data in a resource's or data source's
// Configure. Nil data (the provider not configured yet, as during validation)
// is not an error.
func clientsFrom(data any, diags *diag.Diagnostics) *clients {
	if data == nil {
		return nil
	}
	c, ok := data.(*clients)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("expected *clients, got %T: this is a bug in the provider", data))
		return nil
	}
	return c
}

var objectAsOptions = basetypes.ObjectAsOptions{}
