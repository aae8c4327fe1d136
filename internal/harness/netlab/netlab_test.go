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
	for _, tc := range []struct {
		name    string
		pod, lb netip.Addr
	}{{"IPv4", PodIP, LBIP}, {"IPv6", PodIP6, LBIP6}} {
		t.Run(tc.name, func(t *testing.T) { reproduce(t, l, tc.pod, tc.lb) })
	}
}

func reproduce(t *testing.T, l *Lab, podIP, lbIP netip.Addr) {
	pod := netip.AddrPortFrom(podIP, 16343)
	r, err := l.Listen("pod", pod)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	lb := netip.AddrPortFrom(lbIP, 6343)
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
	if err := l.Run("node", "conntrack", "-D", "-p", "udp", "--orig-dst", lbIP.String()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := r.WaitPacket(ctx, time.Now()); err != nil {
		t.Fatalf("no packet after the stale entry was deleted (sent %d)", s.Sent())
	}
}
