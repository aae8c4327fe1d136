package localplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// EnforceIAM turns moto's IAM authorization on for this plane's account:
// from then on every AWS call must be signed by an access key of an IAM
// user moto knows and is allowed only as that user's policies allow (moto
// matches a policy's actions; see IAMUser for what it does not evaluate).
// The plane's own clients (AWS.Config, ProviderBlock, the LBC) switch to an
// administrator's key first: start anything that calls AWS after this.
func (p *Plane) EnforceIAM(ctx context.Context) error {
	admin, err := p.IAMUser(ctx, "localplane-admin",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	if err != nil {
		return err
	}
	// moto's switch: the number of calls still let through unsigned.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.AWS.Endpoint+"/moto-api/reset-auth", strings.NewReader("0"))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("turning moto's IAM authorization on: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("turning moto's IAM authorization on: %s: %s", resp.Status, body)
	}
	p.AWS.Key = admin
	return nil
}

// IAMUser creates an IAM user whose only policy is the (inline) document
// policy and returns its new access key. moto decides a call by the
// policies' Action and NotAction alone where the call's resource is "*"
// (every EC2 and ELBv2 call): a statement scoped to other resources never
// allows, and one with a Condition denies (moto evaluates no condition key
// of these services). Give it documents with Resource "*" and no Condition.
func (p *Plane) IAMUser(ctx context.Context, name, policy string) (Credentials, error) {
	c := iam.NewFromConfig(p.AWS.Config())
	if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		return Credentials{}, fmt.Errorf("CreateUser %s: %w", name, err)
	}
	if err := p.SetUserPolicy(ctx, name, policy); err != nil {
		return Credentials{}, err
	}
	out, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return Credentials{}, fmt.Errorf("CreateAccessKey %s: %w", name, err)
	}
	return Credentials{aws.ToString(out.AccessKey.AccessKeyId), aws.ToString(out.AccessKey.SecretAccessKey)}, nil
}

// SetUserPolicy replaces an IAM user's policy (IAMUser) with document.
func (p *Plane) SetUserPolicy(ctx context.Context, name, document string) error {
	_, err := iam.NewFromConfig(p.AWS.Config()).PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String(name), PolicyName: aws.String("policy"), PolicyDocument: aws.String(document)})
	if err != nil {
		return fmt.Errorf("PutUserPolicy %s: %w", name, err)
	}
	return nil
}
