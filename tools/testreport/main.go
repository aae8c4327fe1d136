// Command testreport prints what a test run cost, from the JSON events of
// `go test -json` (as gotestsum's --jsonfile keeps them): each package's wall
// time, slowest first, and the slowest tests, so that every run of
// `make test` shows where its time goes.
//
//	testreport [-slowest N] FILE
//	testreport -failures FILE...   (the failed tests of each run, for make flake-check)
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// event is the part of test2json's TestEvent this report reads.
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64 // seconds
}

type result struct {
	name    string
	action  string
	elapsed time.Duration
}

func main() {
	slowest := flag.Int("slowest", 10, "how many of the slowest tests to list")
	failures := flag.Bool("failures", false, "list the failed tests of each file instead")
	flag.Parse()
	if *failures {
		os.Exit(listFailures(os.Stdout, flag.Args()))
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: testreport [-slowest N] FILE | testreport -failures FILE...")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	defer f.Close()
	packages, tests, err := read(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	write(os.Stdout, packages, tests, *slowest)
}

// read collects the final result of every package and every top-level
// test (subtests are counted in their parent's time).
func read(r io.Reader) (packages, tests []result, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // gotestsum may interleave non-JSON lines (build errors)
		}
		if e.Action != "pass" && e.Action != "fail" {
			continue
		}
		res := result{action: e.Action, elapsed: time.Duration(e.Elapsed * float64(time.Second))}
		switch {
		case e.Test == "":
			res.name = e.Package
			packages = append(packages, res)
		case !strings.Contains(e.Test, "/"):
			res.name = shortPackage(e.Package) + "." + e.Test
			tests = append(tests, res)
		}
	}
	return packages, tests, sc.Err()
}

func shortPackage(p string) string {
	return strings.TrimPrefix(p, "github.com/telemetry-platform/terraform-provider-telemetry/")
}

func write(w io.Writer, packages, tests []result, slowest int) {
	byTime := func(a, b result) int { return int(b.elapsed - a.elapsed) }
	slices.SortFunc(packages, byTime)
	slices.SortFunc(tests, byTime)
	fmt.Fprintln(w, ">> wall time by package (they run in parallel: the run takes about the longest, not the sum)")
	for _, p := range packages {
		if p.elapsed < time.Second && p.action == "pass" {
			continue
		}
		fmt.Fprintf(w, "   %-4s %9s  %s\n", p.action, p.elapsed.Round(100*time.Millisecond), shortPackage(p.name))
	}
	fmt.Fprintf(w, ">> the %d slowest tests\n", min(slowest, len(tests)))
	for _, t := range tests[:min(slowest, len(tests))] {
		fmt.Fprintf(w, "   %-4s %9s  %s\n", t.action, t.elapsed.Round(100*time.Millisecond), t.name)
	}
}

// listFailures prints, per file (one run each), the tests and packages that
// failed, and a closing count; it returns 1 when any did.
func listFailures(w io.Writer, files []string) int {
	total := 0
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(w, "%s: %v\n", name, err)
			total++
			continue
		}
		packages, tests, err := read(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(w, "%s: %v\n", name, err)
			total++
			continue
		}
		n := 0
		for _, r := range append(tests, packages...) {
			if r.action == "fail" {
				fmt.Fprintf(w, "%s: FAIL %s (%s)\n", name, shortPackage(r.name), r.elapsed.Round(100*time.Millisecond))
				n++
			}
		}
		if len(packages) == 0 {
			fmt.Fprintf(w, "%s: no package ran\n", name)
			n++
		}
		if n == 0 {
			fmt.Fprintf(w, "%s: no failure (%d packages)\n", name, len(packages))
		}
		total += n
	}
	fmt.Fprintf(w, "%d runs, %d failures\n", len(files), total)
	if total > 0 {
		return 1
	}
	return 0
}
