// Command conntrack-agent runs on every node (DaemonSet, hostNetwork) and
// deletes stale UDP conntrack entries: never NATed, or NATed to an endpoint
// that is gone. See docs/controllers/conntrack-agent.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/securemetrics"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "conntrack-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	def := conntrackagent.DefaultConfig()
	var (
		kubeconfig = flag.String("kubeconfig", "", "Path to a kubeconfig; in-cluster configuration when empty.")
		nodeName   = flag.String("node-name", os.Getenv("NODE_NAME"), "This node's name, for Events (env NODE_NAME, from the downward API).")
		dryRun     = flag.Bool("dry-run", false, "Log and count stale entries, delete nothing.")
		period     = flag.Duration("period", def.Period, "Full pass period, whatever happened (safety net).")
		debounce   = flag.Duration("debounce", def.Debounce, "Coalescing window of the triggers (EndpointSlice and Service changes).")
		tombstone  = flag.Duration("tombstone-ttl", def.TombstoneTTL, "How long a deleted UDP Service's addresses are remembered.")
		recheck    = flag.Duration("recheck", def.Recheck, "Delay of a follow-up pass after a pass that deleted entries (catches entries re-created before kube-proxy wrote its rule); follow-ups go on while they keep deleting, the delay doubling up to --recheck-max; 0 disables.")
		recheckMax = flag.Duration("recheck-max", def.RecheckMax, "Longest delay between follow-up passes: the most a late kube-proxy costs a flow.")
		grace      = flag.Duration("deleted-service-grace", def.DeletedServiceGrace, "How long a deleted UDP Service's entries are left alone (a Service re-created within it keeps its flows to pods that still serve it); 0 deletes them at once, as kube-proxy does since v1.38.")
		revoke     = flag.String("revoke-after", durations(def.Revoke), "Delays, after the nlb-policy controller acknowledges a Service's new source set, of the passes that close the connections of removed sources on this node (established connections pass Felix before any policy); empty disables.")
		revokeGap  = flag.Duration("revoke-interval", def.RevokeInterval, "Least time between two revocation passes of one Service: a Service whose sources flap gets one pass per interval, over all it removed meanwhile, and never delays another's; 0: no limit.")
		proxyURL   = flag.String("kube-proxy-metrics-url", "http://127.0.0.1:10249", "kube-proxy's metrics server on this node (its --metrics-bind-address), asked for its mode (/proxyMode) at start and every period; empty: not asked (the agent acts whatever the dataplane).")
		workers    = flag.Int("delete-workers", 4, "Netlink sockets deleting entries in parallel.")
		recvBuf    = flag.Int("netlink-receive-buffer", 8<<20, "Receive buffer of the dump socket, bytes.")
		metrics    = flag.String("metrics-bind-address", ":9402", "Address of /metrics (0 disables).")
		certDir    = flag.String("metrics-cert-dir", "", "Folder with tls.crt and tls.key for the metrics endpoint (a Secret mounted; reloaded when it changes), so scrapers can verify it. Empty: a certificate self-signed at each start.")
		secure     = flag.Bool("metrics-secure", true, "Serve metrics over HTTPS to clients that present a token allowed to get /metrics (TokenReview, SubjectAccessReview); false serves plain HTTP, only for an address bound to localhost (the agent runs on the host network).")
		indexMax   = flag.Int("index-max-entries", def.IndexMax, "Most UDP conntrack entries the agent keeps in memory from conntrack events (about 130 bytes each, twice that while the index grows: raise the memory limit with it), so that a pass triggered by one Service reads its entries there instead of having the kernel walk its whole table; with more, triggered passes read the kernel. 0: no index.")
		stateFile  = flag.String("state-file", "", "File (on a hostPath) where the agent keeps, across its restarts, the tombstones of deleted UDP Services, the addresses of live ones (those deleted while it was down are cleaned at start) and the source sets it saw enforced (sources removed while it was down are revoked at start). Empty: a restart forgets them.")
		apiCheck   = flag.Duration("api-check", def.APICheck, "How often the API server is asked whether it is there; while it is not, the agent logs it and reports not ready. 0 disables.")
		probes     = flag.String("health-probe-bind-address", "127.0.0.1:9403", "Address of /healthz and /readyz (plain HTTP: keep it on loopback, where the kubelet's probes reach it with host: 127.0.0.1, since the agent is on the host network).")
	)
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	logCfg := textlogger.NewConfig()
	logCfg.AddFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String("conntrack-agent"))
		return nil
	}
	logger := textlogger.NewLogger(logCfg)
	setLoggers(logger)
	logger.Info("starting", "version", version.Version, "revision", version.Revision())

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "telemetry-conntrack-agent"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	broadcaster.StartRecordingToSink(ctx.Done())
	defer broadcaster.Shutdown()

	reg := securemetrics.Registry()
	if err := version.Register(reg); err != nil {
		return err
	}
	ct := &conntrackagent.Netlink{Workers: *workers, RecvBuffer: *recvBuf}
	agent := conntrackagent.New(conntrackagent.Config{
		Client: client, Conntrack: ct, NodeName: *nodeName, DryRun: *dryRun,
		Period: *period, Debounce: *debounce, TombstoneTTL: *tombstone, DeletedServiceGrace: *grace,
		Recheck: *recheck, RecheckMax: *recheckMax, RevokeInterval: *revokeGap, APICheck: *apiCheck, StateFile: *stateFile, IndexMax: *indexMax,
		LocalAddrs: ct.LocalAddrs,
		Recorder:   broadcaster.NewRecorder(kubeapi.Scheme(), "telemetry-conntrack-agent"),
		Metrics:    conntrackagent.NewMetrics(reg),
		Log:        logger.WithName("conntrack-agent"),
	})

	for _, d := range strings.Split(*revoke, ",") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		v, err := time.ParseDuration(d)
		if err != nil || v < 0 {
			return fmt.Errorf("--revoke-after: %q is not a duration (e.g. 1s,5s,30s)", d)
		}
		agent.Revoke = append(agent.Revoke, v)
	}
	if *proxyURL != "" {
		agent.Dataplane = conntrackagent.DataplaneProbe{URL: *proxyURL}.Detect
	}

	serve := func(addr string, h http.Handler) {
		srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "http server", "addr", addr)
				stop()
			}
		}()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	go func() {
		if err := securemetrics.Serve(ctx, securemetrics.Config{Addr: *metrics, Secure: *secure, CertDir: *certDir}, cfg); err != nil {
			logger.Error(err, "metrics server", "addr", *metrics)
			stop()
		}
	}()
	probe := func(check func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", probe(agent.Healthy))
	mux.Handle("/readyz", probe(agent.Ready))
	serve(*probes, mux)

	logger.Info("starting", "node", *nodeName, "dryRun", *dryRun, "period", *period)
	return agent.Run(ctx)
}

// setLoggers makes logger the logger of everything the agent runs: its own
// code and client-go (klog), and controller-runtime, whose metrics server
// the agent uses: without it controller-runtime drops its messages and,
// after 30 s, complains that no logger was ever set.
func setLoggers(logger logr.Logger) {
	klog.SetLogger(logger)
	ctrllog.SetLogger(logger)
}

// durations renders a list of durations as --revoke-after takes it.
func durations(ds []time.Duration) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.String())
	}
	return strings.Join(out, ",")
}
