// Command releasecheck refuses a release whose version is not the one the
// repository declares: the first heading of CHANGELOG.md and the Helm
// chart's version and appVersion must all be the version given (the tag,
// without its "v"), so the provider, the images and the chart of a release
// carry one version (VERSIONING.md). goreleaser runs it before a release;
// `make release-check` and the tests run it against the declared version.
//
//	go run ./tools/releasecheck [-root .] [version]
//
// Without a version it checks that the three agree and prints the version.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/telemetry-platform/terraform-provider-telemetry/tools/releasecheck/declared"
)

func main() {
	root := flag.String("root", ".", "the repository's root")
	flag.Parse()
	want := strings.TrimPrefix(flag.Arg(0), "v")
	// A snapshot (goreleaser --snapshot) is not a release: its version is
	// the next one with a suffix.
	if i := strings.Index(want, "-SNAPSHOT"); i >= 0 {
		want = want[:i]
	}
	got, err := declared.Read(*root)
	if err == nil && want != "" && got != want {
		err = fmt.Errorf("releasing %s, but CHANGELOG.md and the chart declare %s: add a CHANGELOG heading for %s and set the chart's version and appVersion to it", want, got, want)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "releasecheck:", err)
		os.Exit(1)
	}
	fmt.Println(got)
}
