package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Repository is where the release publishes the controllers' images
// (.goreleaser.yml's kos), each under its component's name.
const Repository = "ghcr.io/telemetry-platform"

// Components are the images a release publishes.
var Components = []string{"nlb-policy-controller", "conntrack-agent"}

// Resolver gives the digest an image reference points to now.
type Resolver interface {
	Digest(ctx context.Context, ref string) (string, error)
}

// Registry resolves references against their registry over the OCI
// distribution API, with the credentials docker and the cloud helpers
// keep (authn.DefaultKeychain); a public image needs none.
type Registry struct {
	Options []name.Option // name.Insecure for a plain-HTTP registry (tests)
}

func (r Registry) Digest(ctx context.Context, ref string) (string, error) {
	parsed, err := name.ParseReference(ref, r.Options...)
	if err != nil {
		return "", err
	}
	desc, err := remote.Head(parsed, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// imageLine is a manifest's `image:` line: indentation, the reference, and
// what follows (a comment).
var imageLine = regexp.MustCompile(`^(\s*-?\s*image:\s*)"?([^"\s#]+)"?(\s*(#.*)?)$`)

// Pin rewrites a manifest's images of the release (Repository/<component>
// at the version's tag) to repo/<component>:<version>@<digest>, the digest
// the registry gives for that tag now, where repo is the repository the
// images are pulled from (Repository, or a user's mirror of it). An image
// of another repository, of another tag (`latest`) or one the registry
// does not have is an error naming the file's line: a release never ships
// a manifest whose image can change under it. The rest of the manifest is
// kept byte for byte.
func Pin(ctx context.Context, r Resolver, file string, manifest []byte, version, repo string) ([]byte, error) {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(manifest))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pinned := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		m := imageLine.FindStringSubmatch(line)
		if m == nil {
			out.WriteString(line + "\n")
			continue
		}
		component, err := component(m[2], version)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		tagged := repo + "/" + component + ":" + version
		digest, err := r.Digest(ctx, tagged)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: resolving %s: %w (publish the release's images first)", file, n, tagged, err)
		}
		fmt.Fprintf(&out, "%s%s@%s%s\n", m[1], tagged, digest, m[3])
		pinned++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if pinned == 0 {
		return nil, fmt.Errorf("%s: no image of the release in it", file)
	}
	return out.Bytes(), nil
}

// component is the release's component a manifest's image reference names,
// which must be at the version's tag and not yet pinned.
func component(ref, version string) (string, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("image %q: want %s/<component>:%s (%v)", ref, Repository, version, err)
	}
	comp, ok := strings.CutPrefix(tag.Context().Name(), Repository+"/")
	if !ok || !known(comp) {
		return "", fmt.Errorf("image %q is not one of the release's (%s/{%s})", ref, Repository, strings.Join(Components, ","))
	}
	if tag.TagStr() != version {
		return "", fmt.Errorf("image %q is not at the release's version %s: the manifests name the version the release publishes (VERSIONING.md)", ref, version)
	}
	return comp, nil
}

func known(component string) bool {
	for _, c := range Components {
		if c == component {
			return true
		}
	}
	return false
}

// PinManifests writes each deploy/*.yaml manifest of root, its images
// pinned (Pin), to out under the same name. Nothing is written unless
// every manifest pins.
func PinManifests(ctx context.Context, r Resolver, root, out, version, repo string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no manifests in %s/deploy (%v)", root, err)
	}
	pinned := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(root, f)
		if !imagesIn(b) {
			pinned[f] = b // RBAC or admission alone: nothing to pin
			continue
		}
		if pinned[f], err = Pin(ctx, r, rel, b, version, repo); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		dst := filepath.Join(out, filepath.Base(f))
		if err := os.WriteFile(dst, pinned[f], 0o644); err != nil {
			return nil, err
		}
		written = append(written, dst)
	}
	return written, nil
}

func imagesIn(manifest []byte) bool {
	for _, line := range strings.Split(string(manifest), "\n") {
		if imageLine.MatchString(line) {
			return true
		}
	}
	return false
}
