// Package spawn starts the test harness's helper processes (moto, Calico's
// webhook, Felix, kube-proxy, the AWS Load Balancer Controller, MetalLB,
// gobgpd) so that they die with the test process: Pdeathsig. But Linux
// sends that signal when the *thread* that started the child exits, and Go
// ends a thread whenever a goroutine locked to it returns (as the
// network-namespace helpers of the tests do, on whatever thread they happen
// to run): a child started from such a thread was killed at random
// (golang/go#27505; gobgpd was, in TestNetworkPolicyBackendWithMetalLBOverBGP
// when another test had run before it). So every child is started from one
// thread that lives as long as the process.
package spawn

import (
	"os/exec"
	"runtime"
	"syscall"
)

var spawner = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread outlives every child
		for f := range spawner {
			f()
		}
	}()
}

// Start starts cmd from the spawner thread, in its own process group,
// killed when the test process ends.
func Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	spawner <- func() { errc <- cmd.Start() }
	return <-errc
}
