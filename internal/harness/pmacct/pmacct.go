// Package pmacct runs pmacct's daemons, Debian's build with its Kafka
// plugin, inside netlab's namespaces: pmacctd as a PoP's exporter (its
// sfprobe plugin exports sFlow, its nfprobe plugin IPFIX, from the traffic it
// captures) and sfacctd/nfacctd as the collectors, configured from the files
// telemetry_collector_routing renders; and reads the records they wrote back
// from Kafka (Reader). The end-to-end pipeline test, its benchmark, the
// demo and the routing's test with real pmacct use it.
package pmacct

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Check says what is missing to run the daemons, or nil.
func Check() error {
	for _, bin := range []string{"pmacctd", "sfacctd", "nfacctd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: apt-get install pmacct (make deps does)", bin)
		}
	}
	return nil
}

// Daemon is one running pmacct daemon.
type Daemon struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Start runs binary (pmacctd, sfacctd or nfacctd) with the configuration
// file conf in network namespace netns (a netlab namespace's full name),
// until Stop. Its output is kept for LogTail.
func Start(name, netns, binary, conf string) (*Daemon, error) {
	d := &Daemon{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command("ip", "netns", "exec", netns, binary, "-f", conf)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // pmacct forks a process per plugin: Stop ends the group
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	return d, nil
}

// Exited reports, without waiting, whether the daemon has ended, and how.
func (d *Daemon) Exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// Stop ends the daemon (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (d *Daemon) Stop() {
	if exited, _ := d.Exited(); exited {
		return
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL) // and plugins left behind
	<-d.done
}

// LogTail is the last n lines the daemon printed.
func (d *Daemon) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(d.out.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return d.Name + ":\n  " + strings.Join(lines, "\n  ")
}

// Exporter is a PoP's exporter configuration: pmacctd capturing on iface,
// sending sFlow to sflow and IPFIX to ipfix from source (also the sFlow
// agent address), every packet sampled, flows exported a second after they
// go idle (or every maxLife while they last).
type Exporter struct {
	Iface        string
	Source       netip.Addr
	SFlow, IPFIX netip.AddrPort
	MaxLife      time.Duration
}

// Config is the exporter's pmacctd configuration.
func (e Exporter) Config() string {
	life := max(int(e.MaxLife/time.Second), 1)
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	line("daemonize", "false")
	line("pcap_interface", e.Iface)
	line("pcap_filter", "udp") // the observed flows, not the interface's own neighbour discovery
	line("aggregate", "src_host, dst_host, src_port, dst_port, proto, tos")
	plugins := []string{}
	if e.SFlow.IsValid() {
		plugins = append(plugins, "sfprobe[sf]")
		line("sfprobe_receiver[sf]", e.SFlow.String())
		line("sfprobe_source_ip[sf]", e.Source.String())
		line("sfprobe_agentip[sf]", e.Source.String())
		line("sampling_rate[sf]", "1")
	}
	if e.IPFIX.IsValid() {
		plugins = append(plugins, "nfprobe[nf]")
		line("nfprobe_receiver[nf]", e.IPFIX.String())
		if e.Source.Is4() {
			// Debian's pmacct 1.7.7 fails to bind nfprobe to an IPv6 source
			// ("bind() failed: Invalid argument"); the PoP's only global
			// IPv6 address is the one the kernel picks anyway.
			line("nfprobe_source_ip[nf]", e.Source.String())
		}
		line("nfprobe_version[nf]", "10")
		line("nfprobe_timeouts[nf]", fmt.Sprintf("udp=1:general=1:maxlife=%d:expint=1", life))
	}
	line("plugins", strings.Join(plugins, ", "))
	return b.String()
}

// WriteConfig writes a configuration into dir as name and returns its path.
func WriteConfig(dir, name, text string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(text), 0o644)
}

// ErrNotRunning is returned by Wait helpers when a daemon ended.
var ErrNotRunning = errors.New("pmacct daemon ended")

// syncBuffer is a bytes.Buffer safe for the daemon's writers and LogTail.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the last MiB
		rest := s.b.Bytes()[s.b.Len()/2:]
		s.b = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
