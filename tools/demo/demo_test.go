package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // as main does
	os.Exit(m.Run())
}

// The demo stays true: it runs to the end and every step reports what it
// should (the conntrack step needs root, as make test has).
func TestDemo(t *testing.T) {
	d := &demo{ctx: context.Background()}
	if err := d.run(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"KafkaTopics":              "12 created, 12 Ready",
		"Security-group rules":     "32 created (per-source model: 294; AWS refuses past 60 per group)",
		"Coarse cover (NLB group)": "10 prefixes",
		"Calico policies":          "4/4 packet checks as expected, cleaned up on delete",
		"Stale conntrack":          "blackholed flow restored",
	}
	got := map[string]string{}
	for _, row := range d.summary {
		got[row[0]] = row[1]
	}
	for k, v := range want {
		if !strings.Contains(got[k], v) {
			t.Errorf("%s: %q, want it to contain %q", k, got[k], v)
		}
	}
}
