package conntrackagent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// runAgent runs a over the unit's clientset and table until the returned
// stop is called.
func (u *unit) runAgent(a *Agent) (stop func()) {
	u.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for a.Ready() != nil {
		if time.Now().After(deadline) {
			u.t.Fatal("agent not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			u.t.Errorf("agent: %v", err)
		}
	}
}

// What the agent must act on survives its restart (a DaemonSet rollout, an
// OOM kill, a node reboot), through the state file:
//   - the tombstone of a Service deleted just before, still in its grace;
//   - a Service deleted while the agent was down;
//   - sources removed from an nlb-policy Service while it was down.
//
// Without the file the restarted agent knew none of them and left the three
// flows in place (the test fails with StateFile empty).
func TestStateSurvivesRestart(t *testing.T) {
	live := udpService("flows", []string{"10.96.0.10"}, "203.0.113.10", 6343, 0)
	tomb := udpService("tomb", []string{"10.96.0.13"}, "203.0.113.13", 6346, 0)
	gone := udpService("gone", []string{"10.96.0.12", "fd00:10:96::12"}, "203.0.113.12", 6345, 30045)
	guarded := acknowledged(udpService("guarded", []string{"10.96.0.14"}, "203.0.113.14", 6347, 0), "192.0.2.0/24", "198.18.0.0/15")
	u := newUnit(t, live, tomb, gone, guarded, slice("flows", 16343, "198.51.100.7"),
		slice("tomb", 16346, "198.51.100.7"), slice("gone", 16345, "198.51.100.7", "2001:db8:7::7"), slice("guarded", 16347, "198.51.100.7"))
	state := filepath.Join(t.TempDir(), "state.json")
	agent := func() *Agent {
		a := u.fresh(NewMetrics(prometheus.NewRegistry()))
		a.StateFile = state
		a.DeletedServiceGrace = 300 * time.Millisecond
		a.Revoke = []time.Duration{10 * time.Millisecond}
		return a
	}
	keep := natedTo(exporter, lbFlows, pod1)
	toTomb := natedTo(ap("192.0.2.52:40000"), ap("203.0.113.13:6346"), ap("198.51.100.7:16346"))
	toGone := natedTo(ap("[2001:db8:5::5]:40000"), ap("[fd00:10:96::12]:6345"), ap("[2001:db8:7::7]:16345"))
	toGoneNodePort := natedTo(ap("192.0.2.53:40000"), ap("192.0.2.1:30045"), ap("198.51.100.7:16345"))
	removed := natedTo(ap("198.18.0.5:40000"), ap("203.0.113.14:6347"), ap("198.51.100.7:16347"))
	keptSource := natedTo(ap("192.0.2.54:40000"), ap("203.0.113.14:6347"), ap("198.51.100.7:16347"))
	u.ct.Add(keep, toTomb, toGone, toGoneNodePort, removed, keptSource)

	ctx := context.Background()
	stop := u.runAgent(agent())
	// Deleted; the agent stops within the grace, before it acts.
	if err := u.kube.CoreV1().Services("telemetry").Delete(ctx, "tomb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	stop()
	if len(u.ct.Flows()) != 6 {
		t.Fatalf("the first agent acted: %v", u.ct.Flows())
	}
	var st savedState
	if b, err := os.ReadFile(state); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Tombstones) != 1 || st.Tombstones[0].Service != "telemetry/tomb" || len(st.Services) != 3 {
		t.Fatalf("saved state: %+v", st)
	}
	// While the agent is down: a Service deleted, a source removed (and
	// acknowledged by the controller).
	if err := u.kube.CoreV1().Services("telemetry").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cur, err := u.kube.CoreV1().Services("telemetry").Get(ctx, "guarded", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	narrowed := acknowledged(cur, "192.0.2.0/24")
	if _, err := u.kube.CoreV1().Services("telemetry").Update(ctx, narrowed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	defer u.runAgent(agent())()
	waitFor(t, "the three flows closed", func() bool {
		f := u.ct.Flows()
		return len(f) == 2
	})
	for _, f := range u.ct.Flows() {
		if f != keep && f != keptSource {
			t.Fatalf("left %v; kept %v", f, u.ct.Flows())
		}
	}
}

// A state file that cannot be read is said in the log and ignored: the
// agent starts as on a first start (it does not refuse to run, and it does
// not act on garbage).
func TestUnreadableStateFile(t *testing.T) {
	u := newUnit(t, udpService("flows", []string{"10.96.0.10"}, "203.0.113.10", 6343, 0), slice("flows", 16343, "198.51.100.7"))
	state := filepath.Join(t.TempDir(), "state.json")
	for _, content := range []string{"{not json", `{"version":99}`, `{"version":1,"tombstones":[{"service":"x","addrs":["nope"]}],"enforced":{"a/b":["300.0.0.0/8"]}}`} {
		if err := os.WriteFile(state, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		a := u.fresh(NewMetrics(prometheus.NewRegistry()))
		a.StateFile = state
		keep := natedTo(exporter, lbFlows, pod1)
		u.ct.Add(keep)
		stop := u.runAgent(a)
		time.Sleep(50 * time.Millisecond)
		stop()
		if f := u.ct.Flows(); len(f) != 1 || f[0] != keep {
			t.Fatalf("state %q: flows %v", content, f)
		}
		// The agent wrote a good file in its place.
		b, err := os.ReadFile(state)
		var st savedState
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil || st.Version != stateVersion || len(st.Services) != 1 {
			t.Fatalf("state %q rewritten as %s (%v)", content, b, err)
		}
	}
}

// A tombstone in the state file whose expiry (or grace) lies beyond what the
// agent would give a Service deleted now is capped at that: a planted entry
// cannot have every pass delete flows to its addresses for years.
func TestStateTombstonesBounded(t *testing.T) {
	u := newUnit(t)
	state := filepath.Join(t.TempDir(), "state.json")
	planted := `{"version":1,"tombstones":[{"service":"victim/svc","addrs":["203.0.113.77:6343","[2001:db8::77]:6343"],` +
		`"from":"2020-01-01T00:00:00Z","expires":"9999-01-01T00:00:00Z"}]}`
	if err := os.WriteFile(state, []byte(planted), 0o600); err != nil {
		t.Fatal(err)
	}
	a := u.fresh(NewMetrics(prometheus.NewRegistry()))
	a.StateFile, a.TombstoneTTL, a.DeletedServiceGrace = state, time.Minute, 0
	a.tombs = map[types.NamespacedName]Tombstone{} // what Run starts with
	before := time.Now()
	a.loadState()
	tomb, ok := a.tombs[types.NamespacedName{Namespace: "victim", Name: "svc"}]
	if !ok {
		t.Fatal("the tombstone was not loaded at all (it should be, capped)")
	}
	if limit := time.Now().Add(a.TombstoneTTL); tomb.Expires.After(limit) || tomb.Expires.Before(before) {
		t.Errorf("tombstone expires %v, want at most %v", tomb.Expires, limit)
	}
}
