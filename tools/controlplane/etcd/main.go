// Command etcd is the upstream etcd server at the version k8s.io/kubernetes
// pins in go.mod, for envtest.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
