package provider

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// cidrValidator accepts canonical CIDRs only, with an error that suggests the
// fix ("host bits are set; the network is 192.0.2.0/24").
type cidrValidator struct{}

func (cidrValidator) Description(context.Context) string {
	return "must be a CIDR in canonical form, e.g. 192.0.2.0/24 or 2001:db8::/32"
}
func (v cidrValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (cidrValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if _, err := cidrset.ParsePrefix(req.ConfigValue.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid CIDR", err.Error())
	}
}

// dnsLabel is an RFC 1123 label: what Kubernetes accepts in names and what
// keeps site names usable in topic, object and metric names.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// dnsLabelValidator explains the rule instead of printing the regexp.
type dnsLabelValidator struct{ max int }

func (v dnsLabelValidator) Description(context.Context) string {
	return fmt.Sprintf("must be a lowercase DNS label: at most %d characters of a-z, 0-9 and '-', starting and ending with a letter or digit", v.max)
}
func (v dnsLabelValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v dnsLabelValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	if len(s) > v.max || !dnsLabel.MatchString(s) {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid name", fmt.Sprintf("%q %s", s, v.Description(ctx)))
	}
}

// durationValidator accepts Go durations plus a "d" (day) unit: "24h", "7d",
// "90m".
type durationValidator struct{}

func (durationValidator) Description(context.Context) string {
	return `must be a positive duration such as "24h", "7d" or "90m"`
}
func (v durationValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v durationValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if d, err := parseDuration(req.ConfigValue.ValueString()); err != nil || d <= 0 {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration",
			fmt.Sprintf("%q %s", req.ConfigValue.ValueString(), v.Description(ctx)))
	}
}

// maxDays is the most days a duration may hold; the longest a Go duration
// holds is about 106,751 days (292 years).
const maxDays = 100000

// parseDuration is time.ParseDuration with whole days leading ("7d",
// "1d12h") accepted, and a value too long for a duration said to be so.
func parseDuration(s string) (time.Duration, error) {
	var days int64
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q: days are a whole number before the d, e.g. \"7d\" or \"1d12h\"", s)
		}
		if n > maxDays {
			return 0, fmt.Errorf("duration %q is more than %d days, the longest accepted", s, maxDays)
		}
		days, rest = n, s[i+1:]
	}
	d := time.Duration(days) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	more, err := time.ParseDuration(rest)
	if err != nil {
		if _, perr := strconv.ParseFloat(strings.TrimRight(rest, "nsuµmh"), 64); perr == nil && !strings.Contains(err.Error(), "unknown unit") {
			// Well formed, but past what a duration holds.
			return 0, fmt.Errorf("duration %q is out of range: the longest is %s (about 292 years)", s, time.Duration(math.MaxInt64))
		}
		if days > 0 {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		return 0, err
	}
	if d+more < d {
		return 0, fmt.Errorf("duration %q is out of range: the longest is %s (about 292 years)", s, time.Duration(math.MaxInt64))
	}
	return d + more, nil
}

// formatDuration renders a duration in the largest unit that divides it, the
// inverse of parseDuration for the values people write.
func formatDuration(d time.Duration) string {
	switch {
	case d > 0 && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d > 0 && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d > 0 && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
}

// ipValidator accepts an IPv4 or IPv6 address (no prefix, no zone).
type ipValidator struct{}

func (ipValidator) Description(context.Context) string {
	return "must be an IPv4 or IPv6 address, e.g. 192.0.2.10 or 2001:db8::10"
}
func (v ipValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v ipValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if a, err := netip.ParseAddr(req.ConfigValue.ValueString()); err != nil || a.Zone() != "" || a.Is4In6() {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid address", fmt.Sprintf("%q %s", req.ConfigValue.ValueString(), v.Description(ctx)))
	}
}
