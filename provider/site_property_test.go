package provider

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TestAccSiteProperty runs random sequences of what users do to
// telemetry_site (create, grow, change, remove, a duplicate name raced in one
// apply, a hand edit, the import of a hand-made topic, destroy) through the
// real terraform CLI against the local plane, and checks after every step
// that nothing the state does not own was changed or deleted (a foreign
// topic stays as it was), that every site in the state has its topic as
// configured, that the plan after a successful apply is empty, and at the end
// that destroy leaves nothing. TELEMETRY_PROPERTY_SEQUENCES (default 2) and
// TELEMETRY_PROPERTY_STEPS (default 8) run it longer.
func TestAccSiteProperty(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()
	env := buildTF(t)
	sequences, steps := envInt("TELEMETRY_PROPERTY_SEQUENCES", 2), envInt("TELEMETRY_PROPERTY_STEPS", 8)
	total := 0
	for seq := 1; seq <= sequences; seq++ {
		t.Run(fmt.Sprintf("seed %d", seq), func(t *testing.T) {
			total += runSiteSequence(t, env, p, c, uint64(seq), steps)
		})
	}
	t.Logf("%d sequences, %d steps, every invariant held after each", sequences, total)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// siteSeq is one sequence: the configuration as it stands (resource label ->
// site) and the runner of terraform in its folder.
type siteSeq struct {
	cliSeq
	c      client.Client
	prefix string
	sites  map[string]propSite
	next   int
}

type propSite struct {
	name       string
	partitions int
	retention  string
}

func runSiteSequence(t *testing.T, env *tfdev.Env, p *localplane.Plane, c client.Client, seed uint64, steps int) int {
	s := &siteSeq{cliSeq: cliSeq{t: t, env: env, dir: t.TempDir(), p: p}, c: c, prefix: fmt.Sprintf("prop%d", seed), sites: map[string]propSite{}}
	rng := rand.New(rand.NewPCG(seed, 77))
	ctx := context.Background()
	// A topic nobody's state owns: it must never change.
	foreign := s.handMade("foreign", 2)
	before := topicShape(t, c, foreign)
	s.apply(true)
	ops := []string{"add", "add", "grow", "retention", "remove", "duplicate", "hand edit", "import"}
	for i := 0; i < steps; i++ {
		op := ops[rng.IntN(len(ops))]
		if len(s.sites) == 0 && (op == "grow" || op == "retention" || op == "remove" || op == "hand edit") {
			op = "add" // nothing to act on yet
		}
		t.Logf("step %d: %s", i+1, op)
		switch op {
		case "add":
			s.sites[s.label()] = propSite{name: s.freshName(), partitions: 1 + rng.IntN(3), retention: "24h"}
			s.apply(true)
		case "grow", "retention", "remove":
			keys := slices.Sorted(maps.Keys(s.sites))
			k := keys[rng.IntN(len(keys))]
			site := s.sites[k]
			switch op {
			case "grow":
				site.partitions++
				s.sites[k] = site
			case "retention":
				site.retention = map[string]string{"24h": "2d", "2d": "24h"}[site.retention]
				s.sites[k] = site
			case "remove":
				delete(s.sites, k)
			}
			s.apply(true)
		case "duplicate":
			// Two resources with one name in one apply: one wins, the other
			// fails and must own nothing (it destroyed the winner's topic).
			name := s.freshName()
			a, b := s.label(), s.label()
			s.sites[a], s.sites[b] = propSite{name: name, partitions: 3, retention: "24h"}, propSite{name: name, partitions: 1, retention: "24h"}
			s.apply(false)
			held := s.stateList()
			switch {
			case slices.Contains(held, "telemetry_site."+a) && !slices.Contains(held, "telemetry_site."+b):
				delete(s.sites, b)
			case slices.Contains(held, "telemetry_site."+b) && !slices.Contains(held, "telemetry_site."+a):
				delete(s.sites, a)
			default:
				t.Fatalf("after a duplicate-name race the state holds %v: want exactly one of %s, %s", held, a, b)
			}
			s.apply(true) // the loser gone from the configuration: converges, the winner's topic kept
		case "hand edit":
			keys := slices.Sorted(maps.Keys(s.sites))
			topic := "sfacctd-flows-" + s.sites[keys[rng.IntN(len(keys))]].name
			u, err := getTopic(ctx, c, topic)
			if err != nil {
				t.Fatal(err)
			}
			labels := u.GetLabels()
			delete(labels, annotations.ManagedBy)
			u.SetLabels(labels)
			if err := c.Update(ctx, u); err != nil {
				t.Fatal(err)
			}
			s.apply(true) // drift put back, and the plan after is empty
			if u, _ := getTopic(ctx, c, topic); u.GetLabels()[annotations.ManagedBy] != annotations.ProviderManager {
				t.Fatalf("the hand-removed label of %s was not put back", topic)
			}
		case "import":
			name := s.freshName()
			s.handMade(name, 2)
			k := s.label()
			s.sites[k] = propSite{name: name, partitions: 2, retention: "24h"}
			s.write()
			s.run("import", "-no-color", "-input=false", "telemetry_site."+k, "default/sfacctd-flows-"+name)
			s.apply(true)
		}
		if after := topicShape(t, c, foreign); !reflect.DeepEqual(after, before) {
			t.Fatalf("step %d (%s) changed the foreign topic %s:\nbefore %v\nafter  %v", i+1, op, foreign, before, after)
		}
	}
	s.run("destroy", "-auto-approve", "-no-color", "-input=false")
	var list unstructured.UnstructuredList
	list.SetGroupVersionKind(kubeapi.KafkaTopic("v1"))
	if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	for _, u := range list.Items {
		if strings.Contains(u.GetName(), s.prefix) && u.GetName() != foreign && u.GetDeletionTimestamp() == nil {
			t.Errorf("destroy left KafkaTopic %s", u.GetName())
		}
	}
	if after := topicShape(t, c, foreign); !reflect.DeepEqual(after, before) {
		t.Fatalf("destroy changed the foreign topic %s", foreign)
	}
	return steps
}

func (s *siteSeq) label() string { s.next++; return fmt.Sprintf("r%d", s.next) }

func (s *siteSeq) freshName() string { s.next++; return fmt.Sprintf("%sn%d", s.prefix, s.next) }

// handMade creates a KafkaTopic as kubectl users write them (only Strimzi's
// cluster label) and returns its name.
func (s *siteSeq) handMade(name string, partitions int) string {
	s.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"partitions": int64(partitions), "replicas": int64(3),
		"config": map[string]any{"retention.ms": int64(86400000), "min.insync.replicas": int64(2)}}}}
	u.SetGroupVersionKind(kubeapi.KafkaTopic(kubeapi.KafkaTopicVersions[0]))
	u.SetNamespace("default")
	if !strings.HasPrefix(name, s.prefix) {
		name = s.prefix + name
	}
	u.SetName("sfacctd-flows-" + name)
	u.SetLabels(map[string]string{kubeapi.StrimziClusterLabel: "telemetry"})
	if err := s.c.Create(context.Background(), u); err != nil {
		s.t.Fatal(err)
	}
	return u.GetName()
}

// topicShape is what the test compares of a topic nobody owns.
func topicShape(t *testing.T, c client.Client, name string) map[string]any {
	t.Helper()
	u, err := getTopic(context.Background(), c, name)
	if apierrors.IsNotFound(err) {
		return map[string]any{"gone": true}
	}
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"spec": u.Object["spec"], "labels": u.GetLabels(), "annotations": u.GetAnnotations()}
}

func (s *siteSeq) write() {
	s.t.Helper()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.sites)) {
		site := s.sites[k]
		fmt.Fprintf(&b, `
resource "telemetry_site" %q {
  name       = %q
  kafka      = { cluster = "telemetry", namespace = "default" }
  partitions = %d
  retention  = %q
}
`, k, site.name, site.partitions, site.retention)
	}
	s.writeMain(b.String())
}

// apply writes the configuration and applies it; when it must succeed, the
// plan after it must be empty and every site's topic as configured.
func (s *siteSeq) apply(mustSucceed bool) {
	s.t.Helper()
	s.write()
	s.applyMain(mustSucceed)
	if !mustSucceed {
		return
	}
	for k, site := range s.sites {
		u, err := getTopic(context.Background(), s.c, "sfacctd-flows-"+site.name)
		if err != nil {
			s.t.Fatalf("%s: its topic: %v", k, err)
		}
		if got := nestedInt(u.Object, "spec", "partitions"); got != int64(site.partitions) {
			s.t.Fatalf("%s: topic has %d partitions, configured %d", k, got, site.partitions)
		}
	}
}
