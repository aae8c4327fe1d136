package netlab

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// The lab reproduces the failure: with no DNAT rule the flow creates a
// never-NATed entry; once the DNAT rule is added the pod still receives
// nothing, because that entry keeps matching; after the entry is deleted
// (conntrack -D here) the pod receives the flow.
func TestLabReproducesTheFailure(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	l, err := New("nltest")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pod := netip.AddrPortFrom(PodIP, 16343)
	r, err := l.Listen("pod", pod)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lb := netip.AddrPortFrom(LBIP, 6343)
	s, err := l.Send(40000, lb, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	time.Sleep(300 * time.Millisecond)
	if err := l.DNAT(lb, pod); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := r.Packets(); n != 0 {
		t.Fatalf("the pod received %d packets through the stale entry: the lab does not reproduce the bug", n)
	}
	if err := l.Run("node", "conntrack", "-D", "-p", "udp", "--orig-dst", LBIP.String()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := r.WaitPacket(ctx, time.Now()); err != nil {
		t.Fatalf("no packet after the stale entry was deleted (sent %d)", s.Sent())
	}
}
