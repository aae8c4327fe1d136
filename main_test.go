package main

import (
	"os"
	"testing"
)

// TestQuietSDKLogs: the framework's and the protocol's logs are switched off
// only when no logging variable is set; any one of them keeps them.
func TestQuietSDKLogs(t *testing.T) {
	vars := []string{"TF_LOG", "TF_LOG_PROVIDER", "TF_LOG_SDK", "TF_LOG_SDK_FRAMEWORK", "TF_LOG_SDK_PROTO"}
	unsetAll := func() {
		for _, v := range vars {
			t.Setenv(v, "")
			os.Unsetenv(v)
		}
	}
	unsetAll()
	quietSDKLogs()
	if os.Getenv("TF_LOG_SDK_FRAMEWORK") != "OFF" || os.Getenv("TF_LOG_SDK_PROTO") != "OFF" {
		t.Errorf("with no logging variable set, the SDK logs stay on: framework %q, proto %q",
			os.Getenv("TF_LOG_SDK_FRAMEWORK"), os.Getenv("TF_LOG_SDK_PROTO"))
	}
	for _, v := range []string{"TF_LOG", "TF_LOG_PROVIDER"} {
		unsetAll()
		t.Setenv(v, "DEBUG")
		quietSDKLogs()
		if got := os.Getenv("TF_LOG_SDK_FRAMEWORK"); got != "" {
			t.Errorf("%s=DEBUG: the framework's logs were switched off (%q)", v, got)
		}
	}
}
