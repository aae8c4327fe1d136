package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
)

// cliSeq is what the property tests share: the real terraform CLI run in
// one folder against the local plane.
type cliSeq struct {
	t   *testing.T
	env *tfdev.Env
	dir string
	p   *localplane.Plane
}

// writeMain writes main.tf: the provider against the plane, then body.
func (s *cliSeq) writeMain(body string) {
	s.t.Helper()
	var b strings.Builder
	b.WriteString(`terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}
`)
	b.WriteString(providerConfig(s.p))
	b.WriteString(body)
	if err := os.WriteFile(filepath.Join(s.dir, "main.tf"), []byte(b.String()), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *cliSeq) run(args ...string) tfdev.Result {
	s.t.Helper()
	res, err := s.env.Run(context.Background(), s.dir, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return res
}

// applyMain applies main.tf. When it must succeed, the plan after it must be
// empty; when it must not, it must fail.
func (s *cliSeq) applyMain(mustSucceed bool) {
	s.t.Helper()
	res, err := s.env.Run(context.Background(), s.dir, "apply", "-auto-approve", "-no-color", "-input=false")
	if !mustSucceed {
		if err == nil {
			s.t.Fatalf("the apply succeeded, want it refused:\n%s", res.Output)
		}
		return
	}
	if err != nil {
		s.t.Fatal(err)
	}
	plan := s.run("plan", "-detailed-exitcode", "-no-color", "-input=false")
	if plan.ExitCode != 0 {
		s.t.Fatalf("the plan after a successful apply is not empty:\n%s", plan.Output)
	}
}

func (s *cliSeq) stateList() []string {
	s.t.Helper()
	return strings.Fields(string(s.run("state", "list").Output))
}
