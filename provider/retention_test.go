package provider

import (
	"strings"
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

// TestDurationMessages: days combine with the other units as people write
// them ("1d12h", which the validator's own example "7d" invites), and a value
// too long says what the longest is instead of only "invalid duration".
func TestDurationMessages(t *testing.T) {
	for in, want := range map[string]time.Duration{"1d12h": 36 * time.Hour, "2d30m": 48*time.Hour + 30*time.Minute, "7d": 168 * time.Hour} {
		if got, err := parseRetention(in); err != nil || got != want {
			t.Errorf("parseRetention(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, gist := range map[string]string{
		"100001d":  "longest",
		"2562048h": "longest",
		"1d12x":    `unknown unit "x"`,
		"d":        "invalid duration",
	} {
		_, err := parseRetention(in)
		if err == nil || !strings.Contains(err.Error(), gist) {
			t.Errorf("parseRetention(%q): %v; want an error saying %q", in, err, gist)
		}
	}
}
