package nlbpolicy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

// TestControllerKilledAtRandom runs the controller's binary and kills it
// with SIGKILL at random points, 15 times, while Services are created,
// edited and deleted without pause; then lets it run and checks the end
// state: every Service acknowledged with exactly its desired policies (the
// specs Desired computes from the Service as it is), no
// policy or network set of a deleted Service (0 leaks), no Service stuck
// on the finalizer, and the controller's own objects only.
func TestControllerKilledAtRandom(t *testing.T) {
	t.Parallel() // on a plane of its own
	p := localplane.New(t, localplane.Options{NoAWS: true})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "chaos"}}); err != nil {
		t.Fatal(err)
	}
	// The binary runs as its ServiceAccount, under the deploy manifests'
	// RBAC and admission policies (its start-up check refuses anything less).
	applyFence(t, p)
	kubeconfig, err := p.ServiceAccountKubeconfig("telemetry-system", "nlb-policy-controller")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "nlb-policy-controller")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/nlb-policy-controller").CombinedOutput(); err != nil {
		t.Fatalf("building the controller: %v\n%s", err, out)
	}
	healthCIDRs := "10.0.0.0/20,10.0.16.0/20,10.0.32.0/20"
	logf, err := os.Create(filepath.Join(t.TempDir(), "controller.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--aws=false", "--health-check-cidrs", healthCIDRs,
			"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--orphan-sweep-interval=2s")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// Churn: Services created, edited and deleted without pause.
	rng := rand.New(rand.NewPCG(9, 10))
	var mu sync.Mutex
	alive := map[string]bool{}
	churnCtx, stopChurn := context.WithCancel(ctx)
	var churn sync.WaitGroup
	churn.Add(1)
	go func() {
		defer churn.Done()
		for i := 0; churnCtx.Err() == nil; i++ {
			name := fmt.Sprintf("s%02d", rng.IntN(30))
			mu.Lock()
			exists := alive[name]
			mu.Unlock()
			switch {
			case !exists:
				if err := c.Create(ctx, service("chaos", name, func(s *corev1.Service) {
					s.Spec.LoadBalancerSourceRanges = []string{fmt.Sprintf("192.0.2.%d/32", rng.IntN(256))}
				})); err == nil {
					mu.Lock()
					alive[name] = true
					mu.Unlock()
				}
			case rng.IntN(3) == 0:
				if err := c.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: name}}); err == nil || apierrors.IsNotFound(err) {
					mu.Lock()
					delete(alive, name)
					mu.Unlock()
				}
			default:
				svc := &corev1.Service{}
				if c.Get(ctx, client.ObjectKey{Namespace: "chaos", Name: name}, svc) == nil && svc.DeletionTimestamp == nil {
					svc.Spec.LoadBalancerSourceRanges = append(svc.Spec.LoadBalancerSourceRanges, fmt.Sprintf("198.51.100.%d/32", i%256))
					_ = c.Update(ctx, svc)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	const kills = 15
	for i := 0; i < kills; i++ {
		cmd := start()
		time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	stopChurn()
	churn.Wait()
	final := start()
	defer func() { _ = syscall.Kill(-final.Process.Pid, syscall.SIGKILL); _ = final.Wait() }()

	// Deleted Services go (the finalizer is released); the rest are acknowledged.
	var problems []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		problems = problems[:0]
		var svcs corev1.ServiceList
		if err := c.List(ctx, &svcs, client.InNamespace("chaos")); err != nil {
			t.Fatal(err)
		}
		live := map[string]bool{}
		for _, s := range svcs.Items {
			switch {
			case s.DeletionTimestamp != nil:
				problems = append(problems, fmt.Sprintf("%s stuck deleting (finalizers %v)", s.Name, s.Finalizers))
			case !ack.Current(&s):
				problems = append(problems, s.Name+" not acknowledged")
			default:
				live[nlbpolicy.BaseName(s.Namespace, s.Name)] = true
				// Exactly the desired policies, as the controller computes them.
				want := nlbpolicy.Desired(nlbpolicy.Input{Service: &s, HealthCheckCIDRs: []string{"10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"}},
					nlbpolicy.DefaultOptions())
				ps, _, err := calicopolicy.Load(ctx, c, client.MatchingLabels{"telemetry-platform.io/owner-name": s.Name})
				if err != nil {
					t.Fatal(err)
				}
				if len(ps) != len(want.Policies) {
					problems = append(problems, fmt.Sprintf("%s has %d policies, want %d", s.Name, len(ps), len(want.Policies)))
				}
				for _, w := range want.Policies {
					i := slices.IndexFunc(ps, func(p *calicov3.GlobalNetworkPolicy) bool { return p.Name == w.Name })
					if i < 0 || !equality.Semantic.DeepEqual(ps[i].Spec, w.Spec) {
						problems = append(problems, fmt.Sprintf("%s: policy %s missing or not as desired", s.Name, w.Name))
					}
				}
			}
		}
		// No object of a Service that is gone.
		ps, ss, err := calicopolicy.Load(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, x := range ps {
			names = append(names, x.Name)
		}
		for _, x := range ss {
			names = append(names, x.Name)
		}
		for _, n := range names {
			if _, owner, ok := nlbpolicy.OwnerOfName(n); ok && !slices.ContainsFunc(svcs.Items, func(s corev1.Service) bool {
				return s.Name == owner && s.DeletionTimestamp == nil
			}) {
				problems = append(problems, "leaked "+n)
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(problems) > 0 {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("after %d kills and churn: %v\ncontroller log (end):\n%.3000s", kills, problems, tail(string(out), 3000))
	}
	mu.Lock()
	t.Logf("%d SIGKILLs with churn: %d Services left, all acknowledged with their policies; 0 leaks, 0 stuck finalizers", kills, len(alive))
	mu.Unlock()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
