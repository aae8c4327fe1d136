package provider

import (
	"testing"
	"time"
)

func TestRetention(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "1ms": time.Millisecond,
		retentionForever: -time.Millisecond} {
		got, err := parseRetention(in)
		if err != nil || got != want {
			t.Errorf("parseRetention(%q) = %v, %v", in, got, err)
		}
		if back, err := parseRetention(formatRetention(got)); err != nil || back != got {
			t.Errorf("formatRetention(%v) = %q reads back as %v (%v)", got, formatRetention(got), back, err)
		}
	}
	// Kafka counts whole milliseconds: anything finer would never read back as written.
	for _, in := range []string{"1ns", "1500us", "0s", "-1h", "-1", "eventually"} {
		if d, err := parseRetention(in); err == nil {
			t.Errorf("parseRetention(%q) = %v, want an error", in, d)
		}
	}
}
