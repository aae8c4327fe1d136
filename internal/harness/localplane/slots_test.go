package localplane

import (
	"testing"
)

// The slots bound what runs at once across every holder of the folder, and
// a released slot is free again.
func TestSlotsBound(t *testing.T) {
	dir := t.TempDir()
	a, err := trySlot(dir, 2)
	if err != nil || a == nil {
		t.Fatalf("first slot: %v %v", a, err)
	}
	b, err := trySlot(dir, 2)
	if err != nil || b == nil {
		t.Fatalf("second slot: %v %v", b, err)
	}
	if c, err := trySlot(dir, 2); err != nil || c != nil {
		t.Fatalf("a third holder got a slot of two (%v, %v)", c, err)
	}
	a.Close()
	c, err := trySlot(dir, 2)
	if err != nil || c == nil {
		t.Fatalf("the released slot is not free again: %v %v", c, err)
	}
	b.Close()
	c.Close()
}

// A subtest of a holder uses its parent's slot instead of waiting for a
// second one (with one slot it would wait for good), and the slot goes
// back when the holder ends.
func TestSlotsNested(t *testing.T) {
	old := slotDir
	slotDir = t.TempDir()
	t.Cleanup(func() { slotDir = old })
	t.Setenv(SlotsEnv, "1")
	t.Run("holder", func(t *testing.T) {
		HoldSlot(t)
		t.Run("nested", func(t *testing.T) { HoldSlot(t) })
		if f, _ := trySlot(slotDir, 1); f != nil {
			t.Fatal("the holder's slot was free while it ran")
		}
	})
	f, err := trySlot(slotDir, 1)
	if err != nil || f == nil {
		t.Fatalf("the holder's slot was not released when it ended: %v", err)
	}
	f.Close()
}

// A pool's plane goes back when its holder ends and serves the next test
// (one plane started for both), and a holder's subtest shares its plane.
func TestPool(t *testing.T) {
	t.Setenv(PoolSizeEnv, "")
	pool := NewPool(Options{NoAWS: true}, 1)
	t.Cleanup(func() {
		if err := pool.Stop(); err != nil {
			t.Error(err)
		}
	})
	var first *Plane
	t.Run("first", func(t *testing.T) {
		first = pool.Take(t)
		t.Run("nested", func(t *testing.T) {
			if p := pool.Take(t); p != first {
				t.Fatal("a subtest of the holder got another plane (with one plane it would have waited for good)")
			}
		})
	})
	t.Run("second", func(t *testing.T) {
		if p := pool.Take(t); p != first {
			t.Fatal("the freed plane did not serve the next test: a second plane started")
		}
	})
	if len(pool.all) != 1 {
		t.Fatalf("%d planes started, want 1", len(pool.all))
	}
}
