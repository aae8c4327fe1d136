package localplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nsProcess is a node component (Felix, kube-proxy) running in a network
// namespace: its process, its log, and the bridge that lets it reach the API
// server at the API server's own loopback address from inside the namespace,
// so no route leaves the namespace.
type nsProcess struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	logf   string
	bridge net.Listener
	wg     sync.WaitGroup
	netns  string
}

// prepare opens the bridge into netnsPath and the log file under dir.
func (n *nsProcess) prepare(dir, name, netnsPath, apiHost string) (*os.File, error) {
	n.name, n.netns, n.done = name, netnsPath, make(chan struct{})
	var err error
	if n.bridge, err = listenIn(netnsPath, apiHost); err != nil {
		return nil, fmt.Errorf("bridging the API server into %s: %w", netnsPath, err)
	}
	n.wg.Add(1)
	go n.serveBridge(apiHost)
	logDir, err := os.MkdirTemp(dir, name+"-")
	if err != nil {
		n.Stop()
		return nil, err
	}
	n.logf = filepath.Join(logDir, name+".log")
	logFile, err := os.Create(n.logf)
	if err != nil {
		n.Stop()
		return nil, err
	}
	return logFile, nil
}

// start starts the process with its output in logFile.
func (n *nsProcess) start(logFile *os.File) error {
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	if err := startChild(n.cmd); err != nil {
		logFile.Close()
		n.Stop()
		return fmt.Errorf("starting %s: %w", n.name, err)
	}
	go func() { n.err = n.cmd.Wait(); logFile.Close(); close(n.done) }()
	return nil
}

// waitFor polls ok every interval until it holds, the process exits or a
// minute passes; what names what is awaited in the error.
func (n *nsProcess) waitFor(ctx context.Context, what string, every time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		select {
		case <-n.done:
			return fmt.Errorf("%s exited at start: %v", n.name, n.err)
		case <-ctx.Done():
			return fmt.Errorf("%s wrote no %s within a minute", n.name, what)
		case <-time.After(every):
		}
		if ok() {
			return nil
		}
	}
}

// LogTail is the end of the process's log, for failure messages.
func (n *nsProcess) LogTail(lines int) string {
	data, _ := os.ReadFile(n.logf)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return n.name + " log (" + n.logf + "):\n" + strings.Join(all, "\n")
}

// Stop kills the process and closes the bridge. The namespace keeps the
// rules it wrote (deleting the namespace removes them).
func (n *nsProcess) Stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
	}
	if n.bridge != nil {
		n.bridge.Close()
	}
	n.wg.Wait()
}

// serveBridge copies each connection accepted in the namespace to the API
// server, dialled from the test's own namespace.
func (n *nsProcess) serveBridge(target string) {
	defer n.wg.Done()
	for {
		in, err := n.bridge.Accept()
		if err != nil {
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(in, out)
		}()
	}
}

// listenIn opens a TCP listener inside a network namespace. The socket
// belongs to that namespace for good; the thread that opened it is
// discarded, so no other goroutine runs in the namespace by accident.
func listenIn(netnsPath, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := os.Open(netnsPath)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, err}
			return
		}
		// Loopback is down in a new namespace until someone brings it up.
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			ch <- result{nil, fmt.Errorf("ip link set lo up: %v: %s", err, out)}
			return
		}
		l, err := net.Listen("tcp", addr)
		ch <- result{l, err}
	}()
	r := <-ch
	return r.l, r.err
}
