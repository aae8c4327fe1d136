package conntrackagent

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// What the agent keeps across its restarts (StateFile, on the node's disk):
// without it a restart forgets, and leaves for good,
//   - the tombstones of Services deleted shortly before (their flows, NATed
//     to former endpoints, reach whatever pod gets those addresses next);
//   - Services deleted while the agent was down (it never sees the deletion);
//   - sources removed from an nlb-policy Service while it was down (their
//     established connections keep passing Felix).
// So the file holds the tombstones, the addresses of every live UDP
// Service, and the source set last enforced per Service; at start the agent
// turns the Services that are gone into tombstones and compares each
// acknowledged set with the one it had enforced.

// stateVersion is the file's format; a file of another version is ignored
// (and said in the log).
const stateVersion = 1

type savedState struct {
	Version    int                     `json:"version"`
	Tombstones []savedService          `json:"tombstones,omitempty"`
	Services   map[string]savedService `json:"services,omitempty"` // live UDP Services, by namespace/name
	Enforced   map[string][]string     `json:"enforced,omitempty"` // namespace/name -> CIDRs
}

type savedService struct {
	Service string    `json:"service,omitempty"`
	Addrs   []string  `json:"addrs,omitempty"`
	Nodes   []uint16  `json:"nodePorts,omitempty"`
	From    time.Time `json:"from,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
}

// serviceAddrs is a live UDP Service's addresses and NodePorts, as a
// tombstone would hold them.
type serviceAddrs struct {
	Addrs []netip.AddrPort
	Nodes []uint16
}

// udpAddrs are the UDP addresses and NodePorts of svc.
func udpAddrs(svc *corev1.Service) serviceAddrs {
	var s serviceAddrs
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != corev1.ProtocolUDP {
			continue
		}
		for _, ip := range ServiceIPs(svc) {
			s.Addrs = append(s.Addrs, netip.AddrPortFrom(ip, uint16(sp.Port)))
		}
		if sp.NodePort != 0 {
			s.Nodes = append(s.Nodes, uint16(sp.NodePort))
		}
	}
	return s
}

// tombstone is the tombstone of a Service with these addresses deleted at
// now.
func (a *Agent) tombstone(key types.NamespacedName, s serviceAddrs, now time.Time) Tombstone {
	return Tombstone{Service: key, Addrs: s.Addrs, Nodes: s.Nodes,
		From: now.Add(a.DeletedServiceGrace), Expires: now.Add(a.DeletedServiceGrace + a.TombstoneTTL)}
}

func encodeService(key string, s serviceAddrs, from, expires time.Time) savedService {
	out := savedService{Service: key, Nodes: s.Nodes, From: from, Expires: expires}
	for _, a := range s.Addrs {
		out.Addrs = append(out.Addrs, a.String())
	}
	return out
}

func decodeService(s savedService) (types.NamespacedName, serviceAddrs, error) {
	var out serviceAddrs
	key, err := parseKey(s.Service)
	if err != nil {
		return key, out, err
	}
	for _, a := range s.Addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return key, out, fmt.Errorf("service %s: %w", s.Service, err)
		}
		out.Addrs = append(out.Addrs, ap)
	}
	out.Nodes = s.Nodes
	return key, out, nil
}

func parseKey(s string) (types.NamespacedName, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' && i > 0 && i < len(s)-1 {
			return types.NamespacedName{Namespace: s[:i], Name: s[i+1:]}, nil
		}
	}
	return types.NamespacedName{}, fmt.Errorf("%q is not namespace/name", s)
}

// loadState reads StateFile: a missing file is a first start; a file that
// cannot be read or parsed is reported and ignored (the agent then knows
// what a first start knows, and says so).
func (a *Agent) loadState() {
	if a.StateFile == "" {
		return
	}
	b, err := os.ReadFile(a.StateFile)
	if os.IsNotExist(err) {
		a.Log.Info("no state file: first start on this node", "file", a.StateFile)
		return
	}
	var st savedState
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err == nil && st.Version != stateVersion {
		err = fmt.Errorf("version %d, this agent reads %d", st.Version, stateVersion)
	}
	if err != nil {
		a.Log.Error(err, "state file ignored: tombstones, Services deleted and sources removed while the agent was down are not acted on", "file", a.StateFile)
		return
	}
	now := a.Clock.Now()
	var inGrace []Tombstone
	a.mu.Lock()
	defer func() {
		a.mu.Unlock()
		for _, t := range inGrace { // a pass when its grace ends
			a.passAtGraceEnd(t, now)
		}
	}()
	for _, t := range st.Tombstones {
		key, s, err := decodeService(t)
		if err != nil {
			a.Log.Error(err, "tombstone ignored", "file", a.StateFile)
			continue
		}
		if now.After(t.Expires) {
			continue
		}
		// Bounded by what this agent would give a Service deleted now: a
		// planted entry with a far expiry would have every pass delete flows
		// to its addresses indefinitely.
		if limit := a.tombstone(key, s, now); t.Expires.After(limit.Expires) || t.From.After(limit.From) {
			a.Log.Info("tombstone's times beyond what this agent gives: capped", "service", key.String(),
				"expires", t.Expires, "cappedTo", limit.Expires)
			t.Expires, t.From = minTime(t.Expires, limit.Expires), minTime(t.From, limit.From)
		}
		a.tombs[key] = Tombstone{Service: key, Addrs: s.Addrs, Nodes: s.Nodes, From: t.From, Expires: t.Expires}
		if t.From.After(now) {
			inGrace = append(inGrace, a.tombs[key])
		}
	}
	a.savedServices = map[types.NamespacedName]serviceAddrs{}
	for k, v := range st.Services {
		v.Service = k
		key, s, err := decodeService(v)
		if err != nil {
			a.Log.Error(err, "saved Service ignored", "file", a.StateFile)
			continue
		}
		a.savedServices[key] = s
	}
	a.savedEnforced = map[types.NamespacedName]cidrset.Set{}
	for k, v := range st.Enforced {
		key, err := parseKey(k)
		set, perr := cidrset.Parse(v)
		if err != nil || perr != nil {
			a.Log.Error(fmt.Errorf("%v %v", err, perr), "saved source set ignored", "service", k)
			continue
		}
		a.savedEnforced[key] = set
	}
	a.Log.Info("state loaded", "file", a.StateFile, "tombstones", len(a.tombs), "services", len(a.savedServices), "enforced", len(a.savedEnforced))
}

// goneWhileDown turns the Services of the state file that the first list
// does not have into tombstones (deleted while the agent was down), and
// asks for a pass over them.
func (a *Agent) goneWhileDown(live map[types.NamespacedName]bool) {
	a.mu.Lock()
	saved := a.savedServices
	a.savedServices = nil
	now := a.Clock.Now()
	var gone []Tombstone
	for key, s := range saved {
		if live[key] {
			continue
		}
		t, ok := a.tombs[key]
		if !ok {
			t = a.tombstone(key, s, now)
			a.tombs[key] = t
		}
		gone = append(gone, t)
	}
	a.mu.Unlock()
	for _, t := range gone {
		a.passAtGraceEnd(t, now)
	}
	if len(gone) > 0 {
		a.Log.Info("Services deleted while the agent was down: their entries go", "services", len(gone))
		a.stateChanged()
	}
}

// passAtGraceEnd asks for a pass over a tombstone's Service when its grace
// ends (at once without one).
func (a *Agent) passAtGraceEnd(t Tombstone, now time.Time) {
	if wait := t.From.Sub(now); wait > 0 {
		a.afterFunc(wait, func() { a.kick("service deleted", t.Service) })
		return
	}
	a.kick("service deleted", t.Service)
}

// stateChanged asks the saver for a write.
func (a *Agent) stateChanged() {
	if a.StateFile == "" {
		return
	}
	select {
	case a.saveC <- struct{}{}:
	default:
	}
}

// snapshot is the state to save.
func (a *Agent) snapshot() savedState {
	services, _ := a.listers()
	st := savedState{Version: stateVersion, Services: map[string]savedService{}, Enforced: map[string][]string{}}
	if services != nil {
		svcs, _ := services.List(labels.Everything())
		for _, svc := range svcs {
			if hasUDP(svc) {
				key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}.String()
				st.Services[key] = encodeService("", udpAddrs(svc), time.Time{}, time.Time{})
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.Clock.Now()
	for key, t := range a.tombs {
		if now.After(t.Expires) {
			continue
		}
		st.Tombstones = append(st.Tombstones, encodeService(key.String(), serviceAddrs{Addrs: t.Addrs, Nodes: t.Nodes}, t.From, t.Expires))
	}
	for key, set := range a.enforced {
		st.Enforced[key.String()] = set.Strings()
	}
	// Sets saved before the restart that no acknowledgement has replaced
	// yet are still what was enforced.
	for key, set := range a.savedEnforced {
		if _, ok := st.Enforced[key.String()]; !ok {
			st.Enforced[key.String()] = set.Strings()
		}
	}
	return st
}

// saveState writes the state atomically (a temporary file renamed over the
// old one: a crash leaves the old file or the new one).
func (a *Agent) saveState() error {
	b, err := json.Marshal(a.snapshot())
	if err != nil {
		return err
	}
	dir := filepath.Dir(a.StateFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), a.StateFile)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// saver writes the state when it changed, at most every stateSaveInterval,
// and once more when ctx ends.
func (a *Agent) saver(done <-chan struct{}) {
	for {
		select {
		case <-done:
			if err := a.saveState(); err != nil {
				a.Log.Error(err, "saving state", "file", a.StateFile)
			}
			return
		case <-a.saveC:
		}
		if err := a.saveState(); err != nil {
			a.Metrics.errors.Inc()
			a.Log.Error(err, "saving state: a restart would forget tombstones and enforced source sets", "file", a.StateFile)
		}
		select {
		case <-done:
		case <-a.Clock.After(stateSaveInterval):
		}
	}
}

// stateSaveInterval bounds how often the state file is written (an
// informer's first list changes it once per Service).
const stateSaveInterval = time.Second

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
