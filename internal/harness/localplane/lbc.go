package localplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LoadBalancerController is the real AWS Load Balancer Controller (v3.5.0,
// built by `make lbc` from the pinned source) running against the plane and
// moto, as it runs in a cluster: it provisions NLBs, listeners, target groups
// and TargetGroupBindings for Services of class service.k8s.aws/nlb.
//
// What differs from a cluster: its admission webhooks are served but not
// registered (the chart's webhook configurations are not installed: nothing
// here depends on them), leader election, Shield and WAF are off, and moto
// answers AWS (see ../shared/third_party/README.md for moto's gaps: IPv6
// subnet association state, no DependencyViolation).
type LoadBalancerController struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	logf string
}

// LBCOptions are the LBC's modes the tests run.
type LBCOptions struct {
	// WithoutNLBSecurityGroups runs it with --feature-gates=NLBSecurityGroup=false:
	// NLBs get no security groups.
	WithoutNLBSecurityGroups bool
}

// lbcArtifact finds what `make lbc` produces (builtArtifact).
func lbcArtifact(env, name string) (string, error) { return builtArtifact(env, "lbc", name) }

// StartLoadBalancerController installs the LBC's CRDs and starts it. Stop
// ends it.
func (p *Plane) StartLoadBalancerController(ctx context.Context, opts LBCOptions) (*LoadBalancerController, error) {
	if p.AWS.Endpoint == "" {
		return nil, errors.New("the AWS Load Balancer Controller needs the plane's AWS (Options.NoAWS is set)")
	}
	bin, err := lbcArtifact("LBC_BINARY", "aws-load-balancer-controller")
	if err != nil {
		return nil, err
	}
	crdDir, err := lbcArtifact("LBC_CRDS", "crds")
	if err != nil {
		return nil, err
	}
	if err := p.installCRDDir(ctx, crdDir, "the AWS Load Balancer Controller's", "make lbc"); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(p.Dir, "lbc-")
	if err != nil {
		return nil, err
	}
	if _, err := writeServingCert(dir); err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	endpoint := p.AWS.Endpoint
	args := []string{
		"--kubeconfig", p.Kubeconfig, "--cluster-name", p.AWS.ClusterName, "--aws-region", p.AWS.Region,
		"--aws-vpc-id", p.AWS.VPCID,
		"--aws-api-endpoints", strings.Join([]string{"EC2=" + endpoint, "Elastic Load Balancing v2=" + endpoint, "STS=" + endpoint,
			"Shield=" + endpoint, "WAFV2=" + endpoint, "WAF Regional=" + endpoint}, ","),
		"--webhook-cert-dir", dir, "--webhook-bind-port", strconv.Itoa(ports[0]),
		"--metrics-bind-addr", "127.0.0.1:" + strconv.Itoa(ports[1]),
		"--health-probe-bind-addr", "127.0.0.1:" + strconv.Itoa(ports[2]),
		"--enable-leader-election=false", "--enable-shield=false", "--enable-waf=false", "--enable-wafv2=false",
	}
	if opts.WithoutNLBSecurityGroups {
		args = append(args, "--feature-gates=NLBSecurityGroup=false")
	}
	l := &LoadBalancerController{done: make(chan struct{}), logf: filepath.Join(dir, "lbc.log")}
	logFile, err := os.Create(l.logf)
	if err != nil {
		return nil, err
	}
	l.cmd = exec.Command(bin, args...)
	l.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"AWS_ACCESS_KEY_ID=" + p.AWS.key().AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + p.AWS.key().SecretAccessKey, "AWS_REGION=" + p.AWS.Region,
		"AWS_EC2_METADATA_DISABLED=true"}
	l.cmd.Stdout, l.cmd.Stderr = logFile, logFile
	if err := startChild(l.cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting the AWS Load Balancer Controller: %w", err)
	}
	go func() { l.err = l.cmd.Wait(); logFile.Close(); close(l.done) }()
	// Ready once its health probe answers.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-l.done:
			return false, fmt.Errorf("exited at start: %v", l.err)
		default:
		}
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(ports[2]), time.Second)
		if err != nil {
			return false, nil
		}
		return true, conn.Close()
	})
	if err != nil {
		l.Stop()
		return nil, fmt.Errorf("the AWS Load Balancer Controller did not start: %w\n%s", err, l.LogTail(30))
	}
	return l, nil
}

// installCRDDir installs the CRDs of a folder (the LBC's TargetGroupBinding
// and the rest, MetalLB's pools and advertisements) and waits until they
// are served; whose and make name them in errors.
func (p *Plane) installCRDDir(ctx context.Context, dir, whose, make string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		return fmt.Errorf("no CRDs in %s: run `%s`", dir, make)
	}
	c, err := p.Client()
	if err != nil {
		return err
	}
	for _, f := range files {
		objs, err := ReadManifests(f)
		if err != nil {
			return err
		}
		if err := p.ApplyManifests(ctx, objs, false); err != nil {
			return fmt.Errorf("installing %s CRDs: %w", whose, err)
		}
		for _, o := range objs {
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				crd := &unstructured.Unstructured{}
				crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
				if err := c.Get(ctx, client.ObjectKey{Name: o.GetName()}, crd); err != nil {
					return false, nil
				}
				conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
				for _, cond := range conditions {
					m, _ := cond.(map[string]any)
					if m["type"] == string(apiextensionsv1.Established) && m["status"] == string(apiextensionsv1.ConditionTrue) {
						return true, nil
					}
				}
				return false, nil
			})
			if err != nil {
				return fmt.Errorf("CRD %s not established: %w", o.GetName(), err)
			}
		}
	}
	return nil
}

// Log is the LBC's log so far.
func (l *LoadBalancerController) Log() string {
	data, _ := os.ReadFile(l.logf)
	return string(data)
}

// LogTail is the end of the log, for failure messages.
func (l *LoadBalancerController) LogTail(lines int) string {
	all := strings.Split(strings.TrimRight(l.Log(), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "AWS Load Balancer Controller log (" + l.logf + "):\n" + strings.Join(all, "\n")
}

// Stop ends the controller.
func (l *LoadBalancerController) Stop() {
	if l.cmd != nil && l.cmd.Process != nil {
		_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
			<-l.done
		}
	}
}
