package main

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/tools/releasecheck/declared"
)

func helmBinary(t *testing.T) string {
	t.Helper()
	bin, err := localplane.HelmBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// mirror is an OCI registry on loopback (go-containerregistry's
// implementation of the distribution API) holding each component's
// multi-platform index at tag; it returns the repository's name and each
// component's digest.
func mirror(t *testing.T, tags ...string) (string, map[string]string) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/telemetry-platform"
	digests := map[string]string{}
	for _, c := range Components {
		for _, tag := range tags {
			idx, err := random.Index(256, 1, 2) // amd64 and arm64, as ko builds them
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.NewTag(repo+"/"+c+":"+tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteIndex(ref, idx); err != nil {
				t.Fatal(err)
			}
			var d v1.Hash
			if d, err = idx.Digest(); err != nil {
				t.Fatal(err)
			}
			if tag != "latest" {
				digests[c] = d.String()
			}
		}
	}
	return repo, digests
}

func containerImages(t *testing.T, o *unstructured.Unstructured) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	var out []string
	for _, c := range cs {
		out = append(out, c.(map[string]any)["image"].(string))
	}
	return out
}

// TestReleaseAssetsPinImages: with the release's images in a registry (and
// a newer `latest` beside them), the repository's manifests and chart become
// assets naming each image by the digest of its release tag: every other
// field of every manifest is unchanged, the packaged chart carries the
// release's version and renders the pinned images, and the assets name the
// repository they were resolved in (a mirror).
func TestReleaseAssetsPinImages(t *testing.T) {
	root := localplane.RepoRoot()
	version, err := declared.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, digests := mirror(t, version, "latest")
	out := t.TempDir()
	assets, err := Make(context.Background(), Registry{Options: []name.Option{name.Insecure}}, root, out, version, repo, helmBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	sources, _ := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	if len(assets) != len(sources)+1 {
		t.Fatalf("assets %v, want the %d manifests and the chart", assets, len(sources))
	}
	pinned := 0
	for _, src := range sources {
		want, err := localplane.ReadManifests(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := localplane.ReadManifests(filepath.Join(out, filepath.Base(src)))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d objects, the source has %d", filepath.Base(src), len(got), len(want))
		}
		for i := range want {
			images := containerImages(t, got[i])
			for j, img := range images {
				comp := strings.TrimSuffix(strings.TrimPrefix(containerImages(t, want[i])[j], Repository+"/"), ":"+version)
				if exp := repo + "/" + comp + ":" + version + "@" + digests[comp]; img != exp {
					t.Errorf("%s %s: image %s, want %s", filepath.Base(src), want[i].GetName(), img, exp)
				}
				pinned++
			}
			// Everything but the images is the source's.
			cs, _, _ := unstructured.NestedSlice(got[i].Object, "spec", "template", "spec", "containers")
			wcs, _, _ := unstructured.NestedSlice(want[i].Object, "spec", "template", "spec", "containers")
			for j := range cs {
				cs[j].(map[string]any)["image"] = wcs[j].(map[string]any)["image"]
			}
			if len(cs) > 0 {
				if err := unstructured.SetNestedSlice(got[i].Object, cs, "spec", "template", "spec", "containers"); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(got[i].Object, want[i].Object) {
				t.Errorf("%s %s/%s differs from its source beyond the images", filepath.Base(src), got[i].GetKind(), got[i].GetName())
			}
		}
	}
	if pinned != len(Components) {
		t.Errorf("%d images pinned in the manifests, want one per component (%d)", pinned, len(Components))
	}
	// The chart: its version, and what it renders.
	pkg := filepath.Join(out, "telemetry-controllers-"+version+".tgz")
	chart, err := run(context.Background(), helmBinary(t), "show", "chart", pkg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(chart, "\nversion: "+version+"\n") || !strings.Contains(chart, "appVersion: "+version) {
		t.Errorf("the packaged chart is not at version %s:\n%s", version, chart)
	}
	rendered, err := run(context.Background(), helmBinary(t), "template", "t", pkg, "--set", "conntrackAgent.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Components {
		if exp := `image: "` + repo + "/" + c + ":" + version + "@" + digests[c] + `"`; !strings.Contains(rendered, exp) {
			t.Errorf("the packaged chart does not render %s", exp)
		}
	}
}

// TestReleaseAssetsRefuse: nothing is written when an image cannot be
// pinned: a manifest at `latest`, at another version, of another
// repository, or a release whose images the registry does not hold.
func TestReleaseAssetsRefuse(t *testing.T) {
	root := localplane.RepoRoot()
	version, err := declared.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := mirror(t, version, "latest")
	source, err := os.ReadFile(filepath.Join(root, "deploy", "conntrack-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	at := Repository + "/conntrack-agent:" + version
	if !strings.Contains(string(source), "image: "+at+"\n") {
		t.Fatalf("deploy/conntrack-agent.yaml does not name %s: the repository's manifests name the declared version", at)
	}
	reg := Registry{Options: []name.Option{name.Insecure}}
	for _, tc := range []struct{ name, image, version, want string }{
		{"latest", Repository + "/conntrack-agent:latest", version, "is not at the release's version"},
		{"another version", Repository + "/conntrack-agent:0.0.1", version, "is not at the release's version"},
		{"another repository", "docker.io/library/busybox:" + version, version, "is not one of the release's"},
		{"already pinned", at + "@sha256:" + strings.Repeat("a", 64), version, "want " + Repository},
		{"not published", at, "9.9.9", "resolving"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "deploy"), 0o755); err != nil {
				t.Fatal(err)
			}
			m := strings.Replace(string(source), "image: "+at, "image: "+tc.image, 1)
			if tc.name == "not published" {
				m = strings.Replace(m, ":"+version, ":"+tc.version, 1)
			}
			if err := os.WriteFile(filepath.Join(dir, "deploy", "conntrack-agent.yaml"), []byte(m), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			_, err := PinManifests(context.Background(), reg, dir, out, tc.version, repo)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "deploy/conntrack-agent.yaml:") {
				t.Fatalf("got %v, want an error naming the line and %q", err, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("assets written although an image could not be pinned (%v)", err)
			}
		})
	}
	// The chart's values: each component's digest key must be found.
	values, err := os.ReadFile(filepath.Join(root, ChartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(values), "repository: "+Repository+"/conntrack-agent", "repository: example.org/agent", 1)
	if _, err := PinValues([]byte(moved), repo, map[string]string{"nlb-policy-controller": "sha256:1", "conntrack-agent": "sha256:2"}); err == nil ||
		!strings.Contains(err.Error(), "conntrack-agent") {
		t.Errorf("values without the agent's repository: %v, want an error naming it", err)
	}
}
