package main

import (
	"bytes"
	"strings"
	"testing"

	"k8s.io/klog/v2/textlogger"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// TestControllerRuntimeLogs: what controller-runtime logs (its metrics
// server's messages among them) reaches the agent's log, instead of being
// dropped until, 30 s in, controller-runtime complains that no logger was set.
func TestControllerRuntimeLogs(t *testing.T) {
	var out bytes.Buffer
	setLoggers(textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&out))))
	ctrllog.Log.WithName("metrics").Info("serving metrics", "probe", "controller-runtime")
	if !strings.Contains(out.String(), "serving metrics") {
		t.Fatalf("controller-runtime's message is not in the agent's log; the log holds %q", out.String())
	}
}
