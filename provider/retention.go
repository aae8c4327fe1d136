package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
)

// retentionForever is how a configuration keeps flows forever: Kafka's
// retention.ms = -1, held here as -1ms.
const retentionForever = "forever"

// parseRetention reads a topic retention: a positive duration in whole
// milliseconds (Kafka's unit, so that what is written reads back the same),
// or "forever".
func parseRetention(s string) (time.Duration, error) {
	if s == retentionForever {
		return -time.Millisecond, nil
	}
	d, err := parseDuration(s)
	switch {
	case err != nil:
		return 0, err
	case d < time.Millisecond:
		return 0, fmt.Errorf("retention %q is below Kafka's smallest, 1ms", s)
	case d%time.Millisecond != 0:
		return 0, fmt.Errorf("retention %q is not whole milliseconds, which Kafka counts in", s)
	}
	return d, nil
}

// formatRetention is the inverse of parseRetention.
func formatRetention(d time.Duration) string {
	if d < 0 {
		return retentionForever
	}
	return formatDuration(d)
}

// retentionValidator accepts what parseRetention reads.
type retentionValidator struct{}

func (retentionValidator) Description(context.Context) string {
	return `must be "forever" or a positive duration in whole milliseconds such as "24h", "7d" or "90m"`
}

func (v retentionValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v retentionValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, err := parseRetention(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid retention",
			fmt.Sprintf("%q %s (%v).", req.ConfigValue.ValueString(), v.Description(ctx), err))
	}
}
