// Package nsbridge carries TCP connections from a network namespace's
// loopback to the same address on the root namespace's loopback, so a
// process in a test's namespace (Felix, kube-proxy, pmacct) reaches the API
// server or a Kafka broker listening on loopback without any route leaving
// the namespace.
package nsbridge

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netns"
)

// Forward makes TCP services on the root namespace's loopback (the API
// server, an in-memory Kafka broker's listeners) reachable at the same
// addresses on the loopback of the network namespace at netnsPath: each
// connection accepted there is carried to the root namespace's listener. The
// root namespace's network is not touched. Stop with the returned function,
// which also ends the connections carried.
func Forward(netnsPath string, addrs ...string) (stop func(), err error) {
	var (
		mu     sync.Mutex
		lns    []net.Listener
		open   = map[net.Conn]bool{}
		wg     sync.WaitGroup
		closed bool
	)
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if add && closed {
			return false
		}
		if add {
			open[c] = true
		} else {
			delete(open, c)
		}
		return true
	}
	stop = func() {
		mu.Lock()
		closed = true
		for _, ln := range lns {
			ln.Close()
		}
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	for _, addr := range addrs {
		ln, err := listenIn(netnsPath, addr)
		if err != nil {
			stop()
			return nil, fmt.Errorf("listening on %s in %s: %w", addr, netnsPath, err)
		}
		mu.Lock()
		lns = append(lns, ln)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				in, err := ln.Accept()
				if err != nil {
					return
				}
				// Dialled from this goroutine's thread: the root namespace
				// (listenIn's thread never runs another goroutine).
				out, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					in.Close()
					continue
				}
				if !track(in, true) || !track(out, true) {
					in.Close()
					out.Close()
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					pipe(in, out)
					track(in, false)
					track(out, false)
				}()
			}
		}()
	}
	return stop, nil
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(a, b); cancel() }()
	go func() { _, _ = io.Copy(b, a); cancel() }()
	<-ctx.Done()
	a.Close()
	b.Close()
}

// listenIn opens a TCP listener inside a network namespace. The socket
// belongs to that namespace for good; the thread that opened it goes back
// to the runtime only once back in the root namespace (package netns).
func listenIn(netnsPath, addr string) (l net.Listener, err error) {
	err = netns.DoPath(netnsPath, func() error {
		// Loopback is down in a new namespace until someone brings it up.
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			return fmt.Errorf("ip link set lo up: %v: %s", err, out)
		}
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}
