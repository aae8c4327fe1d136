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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// event is the part of test2json's TestEvent this report reads.
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64 // seconds
	Output  string
}

type result struct {
	name    string
	action  string
	elapsed time.Duration
	// held is, for a package, how long its tests held plane slots.
	held time.Duration
	// waited is how long the test and its subtests waited for a plane
	// slot (summed: parallel subtests' waits overlap, so it is capped at
	// elapsed).
	waited time.Duration
}

// slotWait matches the line localplane's HoldSlot logs when a test waited
// for one of the machine's plane slots (internal/harness/localplane/slots.go).
var slotWait = regexp.MustCompile(`waited ([0-9.]+) s for one of the machine's \d+ plane slots`)

// slotHeld matches the line HoldSlot logs when a test gives its slot back.
var slotHeld = regexp.MustCompile(`held one of the machine's (\d+) plane slots for ([0-9.]+) s`)

// slotCount is the number of plane slots the run's lines name (0 if none).
var slotCount int

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
// test (subtests are counted in their parent's time, and so are their
// waits for a plane slot).
func read(r io.Reader) (packages, tests []result, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	waits := map[string]time.Duration{} // by package and top-level test
	held := map[string]time.Duration{}  // by package
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // gotestsum may interleave non-JSON lines (build errors)
		}
		top, _, _ := strings.Cut(e.Test, "/")
		key := shortPackage(e.Package) + "." + top
		if e.Action == "output" && e.Test != "" {
			if m := slotWait.FindStringSubmatch(e.Output); m != nil {
				waits[key] += seconds(m[1])
			}
			if m := slotHeld.FindStringSubmatch(e.Output); m != nil {
				held[e.Package] += seconds(m[2])
				slotCount, _ = strconv.Atoi(m[1])
			}
			continue
		}
		if e.Action != "pass" && e.Action != "fail" {
			continue
		}
		res := result{action: e.Action, elapsed: time.Duration(e.Elapsed * float64(time.Second))}
		switch {
		case e.Test == "":
			res.name = e.Package
			res.held = held[e.Package]
			packages = append(packages, res)
		case !strings.Contains(e.Test, "/"):
			res.name = key
			res.waited = min(waits[key], res.elapsed)
			tests = append(tests, res)
		}
	}
	return packages, tests, sc.Err()
}

func seconds(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second))
}

func shortPackage(p string) string {
	return strings.TrimPrefix(p, "github.com/telemetry-platform/terraform-provider-telemetry/")
}

func write(w io.Writer, packages, tests []result, slowest int) {
	byTime := func(a, b result) int { return int(b.elapsed - a.elapsed) }
	byRunning := func(a, b result) int { return int((b.elapsed - b.waited) - (a.elapsed - a.waited)) }
	slices.SortFunc(packages, byTime)
	slices.SortFunc(tests, byRunning)
	fmt.Fprintln(w, ">> wall time by package (they run in parallel: the run takes about the longest, not the sum)")
	var held, longest time.Duration
	for _, p := range packages {
		held += p.held
		longest = max(longest, p.elapsed)
		if p.elapsed < time.Second && p.action == "pass" {
			continue
		}
		slots := ""
		if p.held > 0 {
			slots = fmt.Sprintf(" (plane slots held %s)", p.held.Round(time.Second))
		}
		fmt.Fprintf(w, "   %-4s %9s  %s%s\n", p.action, p.elapsed.Round(100*time.Millisecond), shortPackage(p.name), slots)
	}
	// With every slot busy the run is bound by them: the share says how
	// near it came (the longest package stands for the tests' wall time).
	if held > 0 && slotCount > 0 && longest > 0 {
		fmt.Fprintf(w, ">> plane slots held %s in all: %.0f%% of %d slots over %s\n", held.Round(time.Second),
			100*held.Seconds()/(float64(slotCount)*longest.Seconds()), slotCount, longest.Round(time.Second))
	}
	fmt.Fprintf(w, ">> the %d slowest tests (by their time less their waits for a plane slot)\n", min(slowest, len(tests)))
	for _, t := range tests[:min(slowest, len(tests))] {
		waited := ""
		if t.waited >= time.Second {
			waited = fmt.Sprintf(" (%s of it waiting for a plane slot)", t.waited.Round(time.Second))
		}
		fmt.Fprintf(w, "   %-4s %9s  %s%s\n", t.action, t.elapsed.Round(100*time.Millisecond), t.name, waited)
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
