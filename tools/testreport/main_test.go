package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestReport: packages and top-level tests sorted by their own wall time,
// subtests folded into their parent, non-JSON lines skipped, a failure shown
// as one.
func TestReport(t *testing.T) {
	got := report(t, `{"Action":"run","Package":"m/a","Test":"TestA"}
{"Action":"pass","Package":"m/a","Test":"TestA/sub","Elapsed":9}
{"Action":"pass","Package":"m/a","Test":"TestA","Elapsed":10}
{"Action":"fail","Package":"m/b","Test":"TestB","Elapsed":30.5}
# m/c [build failed]
{"Action":"pass","Package":"m/a","Elapsed":12}
{"Action":"fail","Package":"m/b","Elapsed":31}
`)
	for _, want := range []string{"fail       31s  m/b\n   pass       12s  m/a", "fail     30.5s  m/b.TestB\n   pass       10s  m/a.TestA"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "sub") {
		t.Errorf("a subtest listed apart:\n%s", got)
	}
}

// TestFailures: each run's failed tests are listed with the run, and the
// count closes the list.
func TestFailures(t *testing.T) {
	dir := t.TempDir()
	ok, bad := dir+"/1.json", dir+"/2.json"
	for name, content := range map[string]string{
		ok:  `{"Action":"pass","Package":"m/a","Test":"TestA","Elapsed":1}` + "\n" + `{"Action":"pass","Package":"m/a","Elapsed":1}` + "\n",
		bad: `{"Action":"fail","Package":"m/a","Test":"TestA","Elapsed":2}` + "\n" + `{"Action":"fail","Package":"m/a","Elapsed":2}` + "\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if code := listFailures(&out, []string{ok, bad}); code != 1 {
		t.Errorf("exit %d with a failure", code)
	}
	got := out.String()
	for _, want := range []string{ok + ": no failure (1 packages)", bad + ": FAIL m/a.TestA", "2 runs, 2 failures"} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
}

// TestSlotWaits: a test's waits for a plane slot (its own and its
// subtests', as localplane logs them) are shown beside its time and left
// out of the ranking: the slowest tests are those that took long running.
func TestSlotWaits(t *testing.T) {
	got := report(t, `{"Action":"output","Package":"m/a","Test":"TestA","Output":"    slots.go:88: waited 5.5 s for one of the machine's 3 plane slots (TEST_SLOTS)\n"}
{"Action":"output","Package":"m/a","Test":"TestA/sub","Output":"    kubeproxy_test.go:281: waited 2.5 s for one of the machine's 3 plane slots (TEST_SLOTS)\n"}
{"Action":"pass","Package":"m/a","Test":"TestA/sub","Elapsed":4}
{"Action":"pass","Package":"m/a","Test":"TestA","Elapsed":10}
{"Action":"pass","Package":"m/a","Test":"TestB","Elapsed":5}
{"Action":"pass","Package":"m/a","Elapsed":16}
`)
	want := "pass        5s  m/a.TestB\n   pass       10s  m/a.TestA (8s of it waiting for a plane slot)\n"
	if !strings.Contains(got, want) {
		t.Errorf("report lacks %q:\n%s", want, got)
	}
}

// TestSlotsHeld: the time each package's tests held a plane slot (as
// localplane logs it when a test gives one back) is summed beside the
// package, and the whole run's share of the slots' time closes the table.
func TestSlotsHeld(t *testing.T) {
	got := report(t, `{"Action":"output","Package":"m/a","Test":"TestA","Output":"    slots.go:101: held one of the machine's 3 plane slots for 20.5 s\n"}
{"Action":"output","Package":"m/a","Test":"TestA/sub","Output":"    slots.go:101: held one of the machine's 3 plane slots for 9.5 s\n"}
{"Action":"pass","Package":"m/a","Test":"TestA","Elapsed":25}
{"Action":"output","Package":"m/b","Test":"TestB","Output":"    slots.go:101: held one of the machine's 3 plane slots for 60 s\n"}
{"Action":"pass","Package":"m/b","Test":"TestB","Elapsed":60}
{"Action":"pass","Package":"m/a","Elapsed":30}
{"Action":"pass","Package":"m/b","Elapsed":60}
{"Action":"pass","Package":"m/c","Elapsed":2}
`)
	for _, want := range []string{
		"pass      1m0s  m/b (plane slots held 1m0s)\n",
		"pass       30s  m/a (plane slots held 30s)\n",
		"pass        2s  m/c\n",
		// 90 s held of 3 slots over the longest package's 60 s.
		">> plane slots held 1m30s in all: 50% of 3 slots over 1m0s\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

// report is what write prints for the events in, listing 5 tests.
func report(t *testing.T, in string) string {
	t.Helper()
	packages, tests, err := read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	write(&out, packages, tests, 5)
	return out.String()
}
