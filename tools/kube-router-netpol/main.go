//go:build ignore

// Command kube-router-netpol runs kube-router's network policy controller
// (pkg/controllers/netpol of the pinned kube-router) alone, the way
// pkg/cmd's Run starts it with --run-firewall and neither the router nor the
// service proxy: the same flags, informers, iptables and ipset handlers,
// health checks and "sync iptables took" log. It is not part of this
// module: `make kuberouter` copies it into the extracted kube-router source
// and builds it there, with kube-router's own go.mod. It exists because the
// whole of cmd/kube-router (BGP, IPVS, 1,052 packages) took 10 to 16 minutes
// of a cold CI run to build; this main needs 635 of them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/svcip"
	"github.com/spf13/pflag"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s\n", err)
		os.Exit(1)
	}
}

func run() error {
	klog.InitFlags(nil)
	config := options.NewKubeRouterConfig()
	config.AddFlags(pflag.CommandLine)
	pflag.Parse()
	if err := flag.Set("logtostderr", "true"); err != nil {
		return err
	}
	if err := flag.Set("v", config.VLevel); err != nil {
		return err
	}
	if !config.RunFirewall || config.RunRouter || config.RunServiceProxy || config.RunLoadBalancer {
		return errors.New("this build runs the network policy controller alone: --run-firewall=true --run-router=false --run-service-proxy=false")
	}
	if os.Geteuid() != 0 {
		return errors.New("kube-router needs root for iptables and ipset")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags(config.Master, config.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}

	var wg sync.WaitGroup
	var ipsetMutex sync.Mutex
	healthChan := make(chan *healthcheck.ControllerHeartbeat, 10)
	stopCh := make(chan struct{})
	hc, err := healthcheck.NewHealthController(config)
	if err != nil {
		return fmt.Errorf("creating the health controller: %w", err)
	}
	wg.Add(1)
	go hc.RunServer(stopCh, &wg)

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	nsInformer := factory.Core().V1().Namespaces().Informer()
	npInformer := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stopCh)
	synced := make(chan struct{})
	go func() { factory.WaitForCacheSync(stopCh); close(synced) }()
	select {
	case <-synced:
	case <-time.After(config.CacheSyncTimeout):
		return errors.New("timed out waiting for the caches to sync")
	}
	hc.SetAlive()
	wg.Add(1)
	go hc.RunCheck(healthChan, stopCh, &wg)

	ipValidator, err := svcip.NewValidator(svcip.Config{
		ExternalIPCIDRs: config.ExternalIPCIDRs, LoadBalancerCIDRs: config.LoadBalancerCIDRs, ClusterIPCIDRs: config.ClusterIPCIDRs,
		StrictValidation: config.StrictExternalIPValidation, EnableIPv4: config.EnableIPv4, EnableIPv6: config.EnableIPv6,
	})
	if err != nil {
		return fmt.Errorf("creating the service IP validator: %w", err)
	}
	iptables, ipsets, err := netpol.NewIPTablesHandlers(config)
	if err != nil {
		return fmt.Errorf("creating the iptables handlers: %w", err)
	}
	npc, err := netpol.NewNetworkPolicyController(client, config, podInformer, npInformer, nsInformer, &ipsetMutex, nil,
		iptables, ipsets, ipValidator)
	if err != nil {
		return fmt.Errorf("creating the network policy controller: %w", err)
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{{podInformer, npc.PodEventHandler}, {nsInformer, npc.NamespaceEventHandler}, {npInformer, npc.NetworkPolicyEventHandler}} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return fmt.Errorf("adding an event handler: %w", err)
		}
	}
	wg.Add(1)
	go npc.Run(healthChan, stopCh, &wg)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	klog.Info("shutting down")
	close(stopCh)
	wg.Wait()
	return nil
}
