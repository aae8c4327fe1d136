package tfdev

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGoBuildOncePerProcess: a second build of the same program links to the
// first binary instead of linking anew; once the folders holding it are gone
// it is built again, and a build with other arguments is its own.
func TestGoBuildOncePerProcess(t *testing.T) {
	src := t.TempDir()
	for name, data := range map[string]string{
		"go.mod":  "module example.com/hello\n\ngo 1.22\n",
		"main.go": "package main\n\nvar greeting = \"hello\"\n\nfunc main() { println(greeting) }\n",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	build := func(args ...string) (string, os.FileInfo) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "sub", "hello")
		if err := goBuild(ctx, src, out, ".", args...); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := exec.Command(out).CombinedOutput(); err != nil || len(got) == 0 {
			t.Fatalf("the binary at %s: %v, %q", out, err, got)
		}
		return out, info
	}
	first, a := build()
	second, b := build()
	if !os.SameFile(a, b) {
		t.Fatal("the second build linked the program again; want a link to the first binary")
	}
	_, other := build("-ldflags", "-X main.greeting=hi")
	if os.SameFile(a, other) {
		t.Fatal("a build with other flags got the first build's binary")
	}
	if err := os.RemoveAll(filepath.Dir(first)); err != nil {
		t.Fatal(err)
	}
	_, c := build()
	if !os.SameFile(b, c) {
		t.Fatal("with the first folder gone, want a link to the second binary")
	}
	if err := os.RemoveAll(filepath.Dir(second)); err != nil {
		t.Fatal(err)
	}
	builds.Lock()
	for k, made := range builds.made {
		for _, m := range made {
			if err := os.Remove(m); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		delete(builds.made, k)
	}
	builds.Unlock()
	build() // with every link gone, built again (and run by build)
}
