package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// newNamespace creates a network namespace for the test and removes it
// when the test ends.
func newNamespace(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("entering a network namespace needs root: run the tests as root (make test does, as CI does)")
	}
	name := fmt.Sprintf("netnsdo-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

func TestDoRunsInTheNamespace(t *testing.T) {
	path := newNamespace(t)
	want, err := os.Readlink(path)
	if err != nil {
		// /run/netns/<name> is a bind mount, not a link: compare inodes.
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		want = fmt.Sprintf("net:[%d]", st.Ino)
	}
	var got string
	if err := DoPath(path, func() (err error) {
		got, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("fn ran in %s, want the namespace %s", got, want)
	}
	if err := DoPath(path, func() error { return fmt.Errorf("from fn") }); err == nil || !strings.Contains(err.Error(), "from fn") {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	if err := DoPath("/nonexistent", func() error { return nil }); err == nil {
		t.Fatal("a missing namespace was entered")
	}
}

// A child started with Pdeathsig from the thread that ran fn (as
// terraform-exec starts terraform, from whatever thread its goroutine is
// on) lives on after Do: the thread is not ended. It failed when the thread
// was discarded: the child was killed as soon as Do's goroutine ended.
func TestDoKeepsTheThreadAlive(t *testing.T) {
	path := newNamespace(t)
	var child *exec.Cmd
	if err := DoPath(path, func() error {
		child = exec.Command("sleep", "600")
		child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return child.Start()
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _, _ = child.Process.Wait() }()
	// Many more calls: with discarded threads, the first has long ended
	// by the time these have run.
	for range 50 {
		if err := DoPath(path, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The state is the field after the command's closing parenthesis.
	if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); f[0] == "Z" {
		t.Fatal("the child started in fn was killed when Do returned: Do's thread ended (Pdeathsig)")
	}
}
