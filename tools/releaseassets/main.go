// Command releaseassets makes the release's install assets once its images
// are published: the raw manifests (deploy/*.yaml) and the packaged Helm
// chart, each naming the controllers' images by the digest the registry
// gives for the release's tag, so what a user applies cannot change under
// them (a tag can be moved; a digest cannot). `make release-assets` runs it
// after goreleaser has pushed the images; its output is uploaded to the
// release beside the provider's archives.
//
//	go run ./tools/releaseassets [-version 0.1.0] [-repository ghcr.io/telemetry-platform] [-out dist/release-assets]
//
// -repository names a mirror of the images (an air-gapped registry): the
// digests are read there and the assets name it. Every image must resolve,
// or nothing is written.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/telemetry-platform/terraform-provider-telemetry/tools/releasecheck/declared"
)

func main() {
	root := flag.String("root", ".", "the repository's root")
	version := flag.String("version", "", "the release's version (default: the one CHANGELOG.md and the chart declare)")
	repo := flag.String("repository", Repository, "where the images are pulled from: the release's repository or a mirror of it")
	out := flag.String("out", "dist/release-assets", "where the assets are written")
	helm := flag.String("helm", "", "the helm binary (default: bin/tools/helm, else helm on PATH)")
	insecure := flag.Bool("insecure", false, "the registry speaks plain HTTP (a local mirror)")
	flag.Parse()
	if err := release(context.Background(), *root, *version, *repo, *out, *helm, *insecure); err != nil {
		fmt.Fprintln(os.Stderr, "releaseassets:", err)
		os.Exit(1)
	}
}

func release(ctx context.Context, root, version, repo, out, helm string, insecure bool) error {
	if version == "" {
		v, err := declared.Read(root)
		if err != nil {
			return err
		}
		version = v
	}
	if helm == "" {
		helm = filepath.Join(root, "bin", "tools", "helm")
		if _, err := os.Stat(helm); err != nil {
			if helm, err = exec.LookPath("helm"); err != nil {
				return fmt.Errorf("no helm: `make helm` builds it, or pass -helm")
			}
		}
	}
	var reg Registry
	if insecure {
		reg.Options = []name.Option{name.Insecure}
	}
	assets, err := Make(ctx, reg, root, out, version, repo, helm)
	if err != nil {
		return err
	}
	for _, a := range assets {
		fmt.Println(a)
	}
	return nil
}

// Make resolves each component's image at the version once, then writes
// the pinned manifests and the packaged chart with those digests (a tag
// moved while it runs cannot make the two disagree). It returns the assets
// written.
func Make(ctx context.Context, r Resolver, root, out, version, repo, helm string) ([]string, error) {
	digests := map[string]string{}
	for _, c := range Components {
		ref := repo + "/" + c + ":" + version
		d, err := r.Digest(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w (publish the release's images first)", ref, err)
		}
		digests[c] = d
	}
	fixed := fixedResolver{repo: repo, version: version, digests: digests}
	assets, err := PinManifests(ctx, fixed, root, out, version, repo)
	if err != nil {
		return nil, err
	}
	pkg, err := PackageChart(ctx, helm, root, out, version, repo, digests)
	if err != nil {
		return nil, err
	}
	return append(assets, pkg), nil
}

// fixedResolver answers with the digests resolved once.
type fixedResolver struct {
	repo, version string
	digests       map[string]string
}

func (f fixedResolver) Digest(_ context.Context, ref string) (string, error) {
	for c, d := range f.digests {
		if ref == f.repo+"/"+c+":"+f.version {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s is not one of the release's images", ref)
}
