//go:build ignore

// Command calico-webhook runs Calico's tiered-RBAC admission webhook
// (webhooks/pkg/webhook of the pinned Calico) in the local plane. It is not
// part of this module: `make calico-webhook` copies it into the extracted
// Calico source and builds it there, with Calico's own go.mod.
package main

import (
	"os"

	"github.com/projectcalico/calico/webhooks/pkg/webhook"
)

func main() {
	if err := webhook.NewCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
