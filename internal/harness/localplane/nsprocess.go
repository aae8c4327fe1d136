package localplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/nsbridge"
)

// nsProcess is a node component (Felix, kube-proxy) running in a network
// namespace: its process, its log, and the bridge that lets it reach the API
// server at the API server's own loopback address from inside the namespace,
// so no route leaves the namespace.
type nsProcess struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	logf    string
	release func() // the namespace's bridge to the API server, shared
	netns   string
}

// prepare opens the bridge into netnsPath (shared with the plane's other
// processes there) and the log file under the plane's folder.
func (n *nsProcess) prepare(p *Plane, name, netnsPath, apiHost string) (*os.File, error) {
	n.name, n.netns, n.done = name, netnsPath, make(chan struct{})
	var err error
	if n.release, err = p.bridgeInto(netnsPath, apiHost); err != nil {
		return nil, fmt.Errorf("bridging the API server into %s: %w", netnsPath, err)
	}
	logDir, err := os.MkdirTemp(p.Dir, name+"-")
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
	if n.release != nil {
		n.release()
		n.release = nil
	}
}

// sharedBridge is one namespace's bridge to the API server, used by every
// process of the plane there (Felix and kube-proxy on one node).
type sharedBridge struct {
	stop  func()
	users int
}

// bridgeInto makes the API server reachable at its own address inside a
// namespace, or shares the bridge already there; release when done.
func (p *Plane) bridgeInto(netnsPath, apiHost string) (release func(), err error) {
	p.bridgesMu.Lock()
	defer p.bridgesMu.Unlock()
	b := p.bridges[netnsPath]
	if b == nil {
		stop, err := nsbridge.Forward(netnsPath, apiHost)
		if err != nil {
			return nil, err
		}
		b = &sharedBridge{stop: stop}
		if p.bridges == nil {
			p.bridges = map[string]*sharedBridge{}
		}
		p.bridges[netnsPath] = b
	}
	b.users++
	return sync.OnceFunc(func() {
		p.bridgesMu.Lock()
		defer p.bridgesMu.Unlock()
		if b.users--; b.users == 0 {
			b.stop()
			delete(p.bridges, netnsPath)
		}
	}), nil
}

// nodeCommand runs bin with args in the network namespace at netnsPath, as a
// node's daemon: in a mount namespace of its own whose /run and /var/lib are
// private tmpfs (its locks and state), so nothing outside is written. mkdirs
// are made in them first.
func nodeCommand(netnsPath, bin string, mkdirs []string, args ...string) *exec.Cmd {
	script := "set -e\nmount -t tmpfs tmpfs /run\nmount -t tmpfs tmpfs /var/lib\n"
	if len(mkdirs) > 0 {
		script += "mkdir -p " + strings.Join(mkdirs, " ") + "\n"
	}
	script += `exec "$@"`
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsPath, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", script, "sh", bin}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	return cmd
}

// requireTools says which of the tools a daemon needs is missing.
func requireTools(daemon, install string, tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found, which %s needs: %s", tool, daemon, install)
		}
	}
	return nil
}
