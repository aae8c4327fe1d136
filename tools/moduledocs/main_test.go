package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

// The platform module's README documents every input and output as the
// module declares them (rewrite with `go run ./tools/moduledocs
// examples/modules/telemetry-pop`).
func TestModuleReadmesAreCurrent(t *testing.T) {
	dir := filepath.Join(localplane.RepoRoot(), "examples", "modules", "telemetry-pop")
	doc, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := replace(string(doc), dir)
	if err != nil {
		t.Fatal(err)
	}
	if want != string(doc) {
		t.Fatalf("%s/README.md is not current: run `go run ./tools/moduledocs examples/modules/telemetry-pop`", dir)
	}
	for _, name := range []string{"`sites`", "`collector`", "`kafka`", "`wait`", "`nlb_dns_name`", "`topics`", "`kafka_sizing`", "`security_group_rules`"} {
		if !strings.Contains(string(doc), "| "+name+" |") {
			t.Errorf("README has no row for %s", name)
		}
	}
}

// A variable without a description is refused (the table would say
// nothing about it).
func TestRefusesUndescribed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "v.tf"), []byte("variable \"x\" {\n  type = string\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := render(dir); err == nil || !strings.Contains(err.Error(), "no description") {
		t.Fatalf("render: %v", err)
	}
}
