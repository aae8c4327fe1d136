package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// awsModel mirrors the aws provider's configuration.
type awsModel struct {
	Region                    types.String     `tfsdk:"region"`
	Profile                   types.String     `tfsdk:"profile"`
	AccessKey                 types.String     `tfsdk:"access_key"`
	SecretKey                 types.String     `tfsdk:"secret_key"`
	MaxRetries                types.Int64      `tfsdk:"max_retries"`
	SkipCredentialsValidation types.Bool       `tfsdk:"skip_credentials_validation"`
	AssumeRole                *assumeRoleModel `tfsdk:"assume_role"`
	Endpoints                 *endpointsModel  `tfsdk:"endpoints"`
}

type assumeRoleModel struct {
	RoleARN     types.String `tfsdk:"role_arn"`
	SessionName types.String `tfsdk:"session_name"`
	ExternalID  types.String `tfsdk:"external_id"`
}

type endpointsModel struct {
	EC2   types.String `tfsdk:"ec2"`
	ELBv2 types.String `tfsdk:"elbv2"`
	STS   types.String `tfsdk:"sts"`
}

// defaultAWSMaxAttempts is how many times a throttled or failed AWS call is
// tried: an apply makes dozens of calls, and AWS throttles under load.
const defaultAWSMaxAttempts = 10

func awsBlock() schema.Block {
	return schema.SingleNestedBlock{
		MarkdownDescription: "How to reach AWS, as in the aws provider. Unset values come from the " +
			"standard AWS environment (`AWS_REGION`, `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, " +
			"`AWS_ENDPOINT_URL_EC2`, ...), shared config files and instance roles.",
		Attributes: map[string]schema.Attribute{
			"region":     schema.StringAttribute{Optional: true, MarkdownDescription: "The AWS region. Env: `AWS_REGION`."},
			"profile":    schema.StringAttribute{Optional: true, MarkdownDescription: "A shared-config profile. Env: `AWS_PROFILE`."},
			"access_key": schema.StringAttribute{Optional: true, MarkdownDescription: "Static access key; prefer the environment or a profile."},
			"secret_key": schema.StringAttribute{Optional: true, Sensitive: true, MarkdownDescription: "Static secret key."},
			"max_retries": schema.Int64Attribute{Optional: true, MarkdownDescription: fmt.Sprintf("Maximum attempts of a throttled "+
				"or failed call, with the SDK's backoff. Default %d (the SDK's own 3 fail an apply of a few resources once "+
				"AWS throttles a third of the calls).", defaultAWSMaxAttempts)},
			"skip_credentials_validation": schema.BoolAttribute{Optional: true,
				MarkdownDescription: "Do not call STS GetCallerIdentity before the first AWS call. Default false."},
		},
		Blocks: map[string]schema.Block{
			"assume_role": schema.SingleNestedBlock{
				MarkdownDescription: "A role to assume with STS.",
				Attributes: map[string]schema.Attribute{
					"role_arn":     schema.StringAttribute{Optional: true, MarkdownDescription: "ARN of the role."},
					"session_name": schema.StringAttribute{Optional: true, MarkdownDescription: "Session name."},
					"external_id":  schema.StringAttribute{Optional: true, MarkdownDescription: "External ID."},
				},
			},
			"endpoints": schema.SingleNestedBlock{
				MarkdownDescription: "Custom service endpoints, for VPC endpoints or an emulator.",
				Attributes: map[string]schema.Attribute{
					"ec2":   schema.StringAttribute{Optional: true, MarkdownDescription: "EC2 endpoint URL."},
					"elbv2": schema.StringAttribute{Optional: true, MarkdownDescription: "Elastic Load Balancing v2 endpoint URL."},
					"sts":   schema.StringAttribute{Optional: true, MarkdownDescription: "STS endpoint URL."},
				},
			},
		},
	}
}

// awsHTTPTimeout bounds each AWS HTTP request so an endpoint that does not
// answer fails the call instead of hanging terraform.
const awsHTTPTimeout = 20 * time.Second

// awsSettings is the resolved, known form of the aws block.
type awsSettings struct {
	cfg                 aws.Config
	ec2, elbv2, sts     string
	validateCredentials bool
}

func (m *awsModel) settings(ctx context.Context, userAgent string) (*awsSettings, error) {
	if m == nil {
		m = &awsModel{}
	}
	var unknown []string
	str := func(name string, v types.String) string {
		if v.IsUnknown() {
			unknown = append(unknown, name)
		}
		return v.ValueString()
	}
	region, profile := str("region", m.Region), str("profile", m.Profile)
	accessKey, secretKey := str("access_key", m.AccessKey), str("secret_key", m.SecretKey)
	s := &awsSettings{validateCredentials: !m.SkipCredentialsValidation.ValueBool()}
	if m.SkipCredentialsValidation.IsUnknown() || m.MaxRetries.IsUnknown() {
		unknown = append(unknown, "skip_credentials_validation or max_retries")
	}
	if e := m.Endpoints; e != nil {
		s.ec2, s.elbv2, s.sts = str("endpoints.ec2", e.EC2), str("endpoints.elbv2", e.ELBv2), str("endpoints.sts", e.STS)
	}
	var role *assumeRoleModel
	if r := m.AssumeRole; r != nil && !r.RoleARN.IsNull() {
		role = r
		str("assume_role.role_arn", r.RoleARN)
		str("assume_role.session_name", r.SessionName)
		str("assume_role.external_id", r.ExternalID)
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("aws.%s is not known yet; it must be known when a resource is created or read",
			strings.Join(unknown, ", aws."))
	}
	if (accessKey == "") != (secretKey == "") {
		return nil, errors.New("aws.access_key and aws.secret_key go together: set both or neither")
	}

	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(awsHTTPTimeout)),
		config.WithAppID(userAgent),
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	if accessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")))
	}
	attempts := defaultAWSMaxAttempts
	if n := m.MaxRetries.ValueInt64(); n > 0 {
		attempts = int(n)
	}
	opts = append(opts, config.WithRetryMaxAttempts(attempts))
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region configured: set aws.region in the provider block (or AWS_REGION)")
	}
	if role != nil {
		stsClient := sts.NewFromConfig(cfg, s.stsOptions)
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, role.RoleARN.ValueString(),
			func(o *stscreds.AssumeRoleOptions) {
				if v := role.SessionName.ValueString(); v != "" {
					o.RoleSessionName = v
				}
				if v := role.ExternalID.ValueString(); v != "" {
					o.ExternalID = aws.String(v)
				}
			}))
	}
	s.cfg = cfg
	return s, nil
}

func (s *awsSettings) stsOptions(o *sts.Options) {
	if s.sts != "" {
		o.BaseEndpoint = aws.String(s.sts)
	}
}

// validate calls STS GetCallerIdentity, which needs no permission, so that
// bad credentials or an endpoint that does not answer fail with one clear
// message before any real work.
func (s *awsSettings) validate(ctx context.Context) error {
	if !s.validateCredentials {
		return nil
	}
	_, err := sts.NewFromConfig(s.cfg, s.stsOptions).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	var (
		sendErr *smithyhttp.RequestSendError
		apiErr  smithy.APIError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &sendErr):
		// Nothing answered: the credentials were never looked at.
		return fmt.Errorf("no answer from AWS (STS GetCallerIdentity, endpoint %s): %w. Check aws_endpoint (or the "+
			"AWS_ENDPOINT_URL* variables) and that AWS is reachable from where terraform runs", s.stsEndpoint(), err)
	case errors.As(err, &apiErr):
		return fmt.Errorf("AWS refused the credentials (STS GetCallerIdentity answered %s): %w. Check aws.profile, the "+
			"access keys or the environment's credentials; set aws.skip_credentials_validation to skip this check", apiErr.ErrorCode(), err)
	default:
		return fmt.Errorf("validating AWS credentials (STS GetCallerIdentity; set aws.skip_credentials_validation "+
			"to skip): %w", err)
	}
}

// stsEndpoint is where STS is asked: the configured endpoint, else AWS's.
func (s *awsSettings) stsEndpoint() string {
	switch {
	case s.sts != "":
		return s.sts
	case s.cfg.BaseEndpoint != nil:
		return *s.cfg.BaseEndpoint
	}
	return "the region's default"
}
