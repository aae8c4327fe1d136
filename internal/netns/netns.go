// Package netns runs a function inside a network namespace, on an OS thread
// locked for it, and gives the thread back to the Go runtime only once it is
// back in the namespace it came from.
//
// Why not discard the thread (LockOSThread without Unlock, as is common):
// when a thread ends, every child process started from it with Pdeathsig
// is killed, and terraform-exec starts terraform that way. With tests
// running side by side, terraform commands died ("signal: killed") whenever
// a namespace helper's thread ended after the runtime had forked terraform
// from it. A thread is discarded here only if it cannot return.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn in the network namespace of the file descriptor fd and
// returns its error.
func Do(fd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			// Setns failed: the thread is where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering the network namespace: %w", err)
			return
		}
		err = fn()
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// Left locked: the thread ends with this goroutine, never to
			// run other code in a namespace it was not meant for.
			errc <- errors.Join(err, fmt.Errorf("returning from the network namespace: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// DoPath is Do with the namespace's path (/run/netns/<name>,
// /proc/<pid>/ns/net).
func DoPath(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return Do(int(f.Fd()), fn)
}
