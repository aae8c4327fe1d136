package localplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// motoServer is a moto_server process on a free loopback port.
type motoServer struct {
	cmd      *exec.Cmd
	endpoint string
	logPath  string
	exited   chan struct{}
}

// startMoto runs moto_server on a free loopback port and waits until it
// answers. The port is chosen by the kernel and released just before moto
// binds it; a lost race shows up as an early exit and is retried.
func startMoto(ctx context.Context, dir string) (*motoServer, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, errors.New("moto_server not found on PATH: the AWS API emulator is moto's server " +
			"(Python package moto with its server extra; on this project's machines it is preinstalled, " +
			"see the README's development section)")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		m, err := tryStartMoto(ctx, bin, dir, attempt)
		if err == nil {
			return m, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartMoto(ctx context.Context, bin, dir string, attempt int) (*motoServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("moto-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so that stop also ends anything it forks.
	if err := startChild(cmd); err != nil {
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	m := &motoServer{cmd: cmd, endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(m.exited) }()

	deadline := time.After(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			conn.Close()
			return m, nil
		}
		select {
		case <-m.exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("moto_server exited at start: %s", tail(out, 800))
		case <-deadline:
			_ = m.stop()
			return nil, fmt.Errorf("moto_server did not listen on port %d within 30s (log: %s)", port, logPath)
		case <-ctx.Done():
			_ = m.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *motoServer) stop() error {
	stopGroup(m.cmd, m.exited, 5*time.Second)
	return nil
}

// stopGroup ends a process started in its own process group: SIGTERM, then
// SIGKILL after grace; exited is closed once it has been waited for.
func stopGroup(cmd *exec.Cmd, exited <-chan struct{}, grace time.Duration) {
	select {
	case <-exited:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
