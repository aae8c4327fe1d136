package iamcheck

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// noPermission are operations IAM never refuses.
var noPermission = map[string]bool{"sts:GetCallerIdentity": true}

// TestPoliciesMatchTheCalls: each IAM policy in deploy/iam allows exactly
// the AWS operations its program can make (Operations): a call added to
// the code without its permission, or a permission left after its call was
// removed, fails here naming it. Whether AWS accepts the documents as
// written (their resources and conditions) is not checked here.
func TestPoliciesMatchTheCalls(t *testing.T) {
	root, _ := filepath.Abs("../..")
	for _, tc := range []struct{ policy, program string }{
		{"terraform-provider.json", "."},
		{"nlb-policy-controller.json", "./controllers/cmd/nlb-policy-controller"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			calls, err := Operations(root, tc.program)
			if err != nil {
				t.Fatal(err)
			}
			for op := range noPermission {
				delete(calls, op)
			}
			if len(calls) < 3 {
				t.Fatalf("%s makes %d AWS operations by the analysis (%v): it no longer sees the calls", tc.program, len(calls), calls)
			}
			allowed := allowedActions(t, filepath.Join(root, "deploy", "iam", tc.policy))
			for _, op := range slices.Sorted(maps.Keys(calls)) {
				if !allowed[op] {
					t.Errorf("deploy/iam/%s does not allow %s, which %s calls (in %s): add it", tc.policy, op, tc.program, calls[op])
				}
			}
			for _, op := range slices.Sorted(maps.Keys(allowed)) {
				if _, ok := calls[op]; !ok {
					t.Errorf("deploy/iam/%s allows %s, which %s never calls: remove it", tc.policy, op, tc.program)
				}
			}
		})
	}
	// The conntrack agent makes no AWS call at all: it needs no policy.
	if calls, err := Operations(root, "./controllers/cmd/conntrack-agent"); err != nil || len(calls) != 0 {
		t.Errorf("the conntrack agent makes AWS calls %v (%v): give it a policy in deploy/iam", calls, err)
	}
}

// allowedActions reads the actions a policy document allows.
func allowedActions(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   []string
			Resource any
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.Version != "2012-10-17" {
		t.Errorf("%s: Version %q, want 2012-10-17", path, doc.Version)
	}
	out := map[string]bool{}
	for _, s := range doc.Statement {
		if s.Effect != "Allow" || s.Resource == nil {
			t.Errorf("%s: a statement with Effect %q and Resource %v", path, s.Effect, s.Resource)
		}
		for _, a := range s.Action {
			out[a] = true
		}
	}
	return out
}
