package nlbpolicy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLoadAWSConfigRegion: the region comes from AWS_REGION first, else
// from the instance metadata service (a fake IMDSv2 here: a token, then the
// instance identity document the SDK reads the region from), and with neither the controller refuses to start,
// saying how to set it, instead of falling back to a default region.
func TestLoadAWSConfigRegion(t *testing.T) {
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			_, _ = w.Write([]byte("token"))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/dynamic/instance-identity/document" && r.Header.Get("X-Aws-Ec2-Metadata-Token") == "token":
			_, _ = w.Write([]byte(`{"region": "eu-central-1", "availabilityZone": "eu-central-1a", "instanceId": "i-0123456789abcdef0"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer imds.Close()
	for _, tc := range []struct {
		name, region, imds, want string
	}{
		{"AWS_REGION", "ap-southeast-2", imds.URL, "ap-southeast-2"},
		{"the node's instance metadata", "", imds.URL, "eu-central-1"},
		{"neither", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_REGION", tc.region)
			t.Setenv("AWS_DEFAULT_REGION", "")
			t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
			t.Setenv("AWS_PROFILE", "")
			if tc.imds != "" {
				t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", tc.imds)
				t.Setenv("AWS_EC2_METADATA_DISABLED", "")
			} else {
				t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
			}
			cfg, err := LoadAWSConfig(context.Background(), "http://127.0.0.1:1")
			switch {
			case tc.want == "" && !errors.Is(err, ErrNoRegion):
				t.Fatalf("region %q, err %v; want ErrNoRegion", cfg.Region, err)
			case tc.want != "" && (err != nil || cfg.Region != tc.want || *cfg.BaseEndpoint != "http://127.0.0.1:1"):
				t.Fatalf("region %q, err %v; want %s with the endpoint set", cfg.Region, err, tc.want)
			}
		})
	}
}
