// Command kube-proxy is the upstream kube-proxy, built from k8s.io/kubernetes at
// the version pinned in go.mod, for the conntrack agent's network tests.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
