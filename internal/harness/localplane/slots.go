package localplane

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Slots bound how many tests use a plane at once on this machine, across
// every test binary `go test` runs side by side: a test holds a slot from
// New or Pool.Take until it ends. Why: with each package's tests parallel
// and the packages parallel too, a 2-core machine ran a dozen API servers,
// Felixes and kube-proxies at once; the real dataplanes then took longer to
// program than the timings the tests (and the product's programming grace)
// describe, and tests failed for the load alone. With the slots the machine
// stays busy (the packages no longer wait on each other's serial tests)
// without being swamped.
//
// A slot is an flock on a file in a folder all test binaries share, so a
// crashed binary's slots are released by the kernel.

// SlotsEnv overrides the number of slots (default: one per CPU, and two
// more). Measured on 2 cores: when a plane took 8.4 s of CPU-heavy start,
// 4 slots kept the CPU at 100%, the dataplanes' own timings stretched
// (kube-router took over 3 s to program an edit) and a run took longer than
// with 3. With planes handed over warm in about 5.5 s (warm.go), 3 slots left
// the CPU 70% busy with the slots 98% held, and 4 slots ran the suite in
// 9 min 34 s against 12 min 12 s (CPU 83% busy, 0 failures of 505), and with
// two stress-ng CPU workers beside it in 12 min 1 s, 0 failures.
const SlotsEnv = "TEST_SLOTS"

// slotPoll is how often a waiting test tries the slots again; each try is a
// non-blocking flock, so the wait ends at the first try after a release.
const slotPoll = 50 * time.Millisecond

var slots = struct {
	mu   sync.Mutex
	held map[string]*os.File // by the holding test's name
}{held: map[string]*os.File{}}

func slotCount() int {
	if n, err := strconv.Atoi(os.Getenv(SlotsEnv)); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU() + 2
}

// HoldSlot waits for a slot and holds it until tb ends; New and Pool.Take
// call it, and a test whose plane comes from elsewhere (the demo's) calls it
// itself. A test (or subtest of a test) that already holds one uses it: a
// test with two planes takes one slot, so no test waits on a slot it holds
// itself.
func HoldSlot(tb testing.TB) {
	tb.Helper()
	if err := holdSlot(tb); err != nil {
		tb.Fatalf("a plane slot: %v", err)
	}
}

func holdSlot(tb testing.TB) error {
	tb.Helper()
	name := tb.Name()
	slots.mu.Lock()
	for holder := range slots.held {
		if name == holder || strings.HasPrefix(name, holder+"/") {
			slots.mu.Unlock()
			return nil
		}
	}
	slots.mu.Unlock()
	n := slotCount()
	waited := time.Now()
	for {
		f, err := trySlot(slotDir, n)
		if err != nil {
			return err
		}
		if f == nil {
			time.Sleep(slotPoll)
			continue
		}
		// tools/testreport reads this line (the slowest tests less their waits).
		if d := time.Since(waited); d > time.Second {
			tb.Logf("waited %.1f s for one of the machine's %d plane slots (%s)", d.Seconds(), n, SlotsEnv)
		}
		slots.mu.Lock()
		slots.held[name] = f
		slots.mu.Unlock()
		held := time.Now()
		tb.Cleanup(func() {
			slots.mu.Lock()
			delete(slots.held, name)
			slots.mu.Unlock()
			f.Close() // releases the lock
			// tools/testreport sums these: where the machine's plane
			// capacity goes, package by package.
			tb.Logf("held one of the machine's %d plane slots for %.1f s", n, time.Since(held).Seconds())
		})
		return nil
	}
}

// slotDir is the folder every test binary of the machine shares.
var slotDir = filepath.Join(os.TempDir(), "terraform-provider-telemetry-slots")

// trySlot takes the first free of dir's n slots, without waiting: the
// locked file (closing it releases the slot), or nil when all are held.
func trySlot(dir string, n int) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i := range n {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("slot-%d", i)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return f, nil
	}
	return nil, nil
}
