package localplane

import (
	"os/exec"
	"runtime"
	"syscall"
)

// The plane's helper processes (moto, Calico's webhook, Felix, the AWS Load
// Balancer Controller) die with the test process: Pdeathsig. But Linux sends
// that signal when the *thread* that started the child exits, and Go ends a
// thread whenever a goroutine locked to it returns (as the network-namespace
// helpers of the tests do, on whatever thread they happen to run): a child
// started from such a thread was killed at random (golang/go#27505). So
// every child is started from one thread that lives as long as the process.
var spawner = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread() // never unlocked: this thread outlives every child
		for f := range spawner {
			f()
		}
	}()
}

// startChild starts cmd from the spawner thread, in its own process group,
// killed when the test process ends.
func startChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	spawner <- func() { errc <- cmd.Start() }
	return <-errc
}
