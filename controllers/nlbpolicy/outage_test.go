package nlbpolicy_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/standin"
)

// apiOutage stands between the controller and the API server: down() closes
// every connection and refuses new ones, as an API server that is stopped
// (an outage, a control-plane upgrade) does to its clients; up() serves
// again on the same address. (envtest cannot restart kube-apiserver with the
// same certificates, so the outage is cut in front of it.)
type apiOutage struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func startAPIOutage(t *testing.T, target string) *apiOutage {
	t.Helper()
	o := &apiOutage{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.addr = ln.Addr().String()
	o.serve(ln)
	t.Cleanup(o.down)
	return o
}

func (o *apiOutage) serve(ln net.Listener) {
	o.mu.Lock()
	o.ln = ln
	o.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", o.target)
			if err != nil {
				in.Close()
				continue
			}
			o.mu.Lock()
			o.conns[in], o.conns[out] = true, true
			o.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

func (o *apiOutage) down() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln != nil {
		o.ln.Close()
		o.ln = nil
	}
	for c := range o.conns {
		c.Close()
	}
	o.conns = map[net.Conn]bool{}
}

func (o *apiOutage) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		t.Fatal(err)
	}
	o.serve(ln)
}

// TestAPIServerOutage: the API server goes away for 15 s while the
// controller runs; Services created and deleted meanwhile are handled once
// it is back (the new one acknowledged, the deleted one's policies gone and
// its finalizer released), with no restart of the controller.
func TestAPIServerOutage(t *testing.T) {
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}); err != nil {
		t.Fatal(err)
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()
	api, err := url.Parse(p.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	outage := startAPIOutage(t, api.Host)
	cfg := rest.CopyConfig(p.Config)
	cfg.Host = "https://" + outage.addr
	startControllerAs(t, p, cfg, false, ctrl.Options{})
	acked := func(svc *corev1.Service) func() (bool, string) {
		return func() (bool, string) {
			got, ok := get(t, c, svc)
			return ok && ack.Current(got), "not acknowledged"
		}
	}
	before := service("telemetry", "before")
	if err := c.Create(ctx, before); err != nil {
		t.Fatal(err)
	}
	eventually(t, "acknowledgement before the outage", acked(before))

	outage.down()
	during := service("telemetry", "during")
	if err := c.Create(ctx, during); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, before); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	if got, ok := get(t, c, during); ok && ack.Current(got) {
		t.Fatal("acknowledged while the controller could not reach the API server")
	}
	outage.up(t)
	back := time.Now()
	eventually(t, "the Service created during the outage acknowledged", acked(during))
	eventually(t, "the Service deleted during the outage released, its policies gone", func() (bool, string) {
		_, exists := get(t, c, before)
		ps, ss := owned(t, c, before)
		return !exists && len(ps)+len(ss) == 0, "still there"
	})
	t.Logf("after a 15 s outage, the controller caught up %.1f s after the API server was back", time.Since(back).Seconds())
}
