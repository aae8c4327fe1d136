package provider

import (
	"testing"
	"time"
)

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "90m": 90 * time.Minute} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := parseDuration("7x"); err == nil {
		t.Error("7x is not a duration")
	}
	for d, want := range map[time.Duration]string{48 * time.Hour: "2d", 5 * time.Hour: "5h", 90 * time.Minute: "90m", 45 * time.Second: "45s", 1500 * time.Millisecond: "1500ms"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
