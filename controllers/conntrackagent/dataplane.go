package conntrackagent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Dataplane is what the agent found of the node's service proxy.
type Dataplane struct {
	// Mode is kube-proxy's /proxyMode answer (iptables, nftables, ipvs,
	// kernelspace), or "unknown" when no kube-proxy answered (a kube-proxy
	// replacement such as Cilium's or Calico's eBPF dataplane, or a
	// kube-proxy whose metrics are not on the address the agent asks).
	Mode string
	// Err says why the mode is unknown.
	Err error
}

// Acts reports whether the agent's passes can help on this dataplane:
// kube-proxy's iptables and nftables modes NAT in netfilter, whose conntrack
// table the agent reads. IPVS keeps its own connection table, which the
// agent cannot see; on an unknown dataplane the passes run as a safety net
// (they delete only entries that contradict the Services, and an eBPF
// dataplane leaves none in the kernel's table).
func (d Dataplane) Acts() bool { return d.Mode != "ipvs" }

// Summary is the one-line description used in Events and logs.
func (d Dataplane) Summary() string {
	switch d.Mode {
	case "iptables", "nftables":
		return fmt.Sprintf("kube-proxy in %s mode: the agent deletes the stale UDP entries kube-proxy leaves (a Service address added after its endpoints) and acts as a safety net otherwise", d.Mode)
	case "ipvs":
		return "kube-proxy in ipvs mode: IPVS keeps its own connection table, which the agent cannot see; it deletes no stale entry on this node"
	case "unknown":
		return fmt.Sprintf("no kube-proxy answered (%v): a kube-proxy replacement (Cilium, Calico eBPF) keeps its NAT state outside conntrack, where the agent cannot help; its passes run as a safety net", d.Err)
	}
	return fmt.Sprintf("kube-proxy in %q mode: not a mode the agent knows; its passes run as a safety net", d.Mode)
}

// DataplaneProbe asks the node's kube-proxy, on its metrics address, for its
// mode (/proxyMode). Its version is not exposed there (kube-proxy v1.32 and
// v1.37 export no kubernetes_build_info), so the agent does not claim one.
type DataplaneProbe struct {
	// URL of kube-proxy's metrics server, e.g. http://127.0.0.1:10249.
	URL string
	// Dial, when set, opens the connections (tests dial inside a network
	// namespace); the default dialer otherwise.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Detect asks kube-proxy; it never fails: an unreachable kube-proxy is the
// "unknown" dataplane.
func (p DataplaneProbe) Detect(ctx context.Context) Dataplane {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: p.Dial, DisableKeepAlives: true}}
	get := func(path string) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.URL, "/")+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return resp.Body, nil
	}
	body, err := get("/proxyMode")
	if err != nil {
		return Dataplane{Mode: "unknown", Err: err}
	}
	mode, err := io.ReadAll(io.LimitReader(body, 64))
	body.Close()
	if err != nil {
		return Dataplane{Mode: "unknown", Err: err}
	}
	return Dataplane{Mode: strings.TrimSpace(string(mode))}
}
