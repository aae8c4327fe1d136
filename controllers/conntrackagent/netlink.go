package conntrackagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netns"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Netlink reads and deletes conntrack entries of one network namespace over
// netlink (github.com/ti-mo/conntrack; no conntrack binary).
type Netlink struct {
	// NetNS is a file descriptor of the network namespace; 0 is the
	// agent's own (hostNetwork: the node's).
	NetNS int
	// Workers deleting in parallel, one netlink socket each.
	Workers int
	// RecvBuffer is the dump socket's receive buffer in bytes.
	RecvBuffer int

	// eventDatagrams counts the datagrams Watch read (a test checks that
	// the kernel filter dropped the other protocols').
	eventDatagrams atomic.Int64
}

// Constants of the kernel's ctnetlink that ti-mo/conntrack does not export.
const (
	ipctnlMsgCtGet        = 1
	ctaTupleOrig          = 1
	ctaTupleProto         = 2
	ctaProtoNum           = 1
	ctaFilter             = 25
	ctaFilterOrigFlags    = 1
	ctaFilterReplyFlags   = 2
	ctaFilterFlagProtoNum = 1 << 3
	ctaFilterFlagIPDst    = 1 << 1
	ctaFilterFlagDstPort  = 1 << 5
)

// Filter selects entries by their original direction: an IP protocol, and
// optionally a destination address and a destination port. The kernel
// applies it (CTA_FILTER, Linux 5.8+), so only matching entries cross into
// the agent; on an older kernel the agent reads all and filters in Go.
type Filter struct {
	Proto   uint8
	Dst     netip.Addr // zero: any
	DstPort uint16     // zero: any
}

func (f Filter) match(fl Flow) bool {
	return fl.Proto == f.Proto &&
		(!f.Dst.IsValid() || fl.OrigDst.Addr().Unmap() == f.Dst.Unmap()) &&
		(f.DstPort == 0 || fl.OrigDst.Port() == f.DstPort)
}

// families are the dumps a filter needs: the address's family, or both.
func (f Filter) families() []netfilter.ProtoFamily {
	switch {
	case !f.Dst.IsValid():
		return []netfilter.ProtoFamily{netfilter.ProtoIPv4, netfilter.ProtoIPv6}
	case f.Dst.Unmap().Is4():
		return []netfilter.ProtoFamily{netfilter.ProtoIPv4}
	}
	return []netfilter.ProtoFamily{netfilter.ProtoIPv6}
}

// attributes are the dump request's CTA_TUPLE_ORIG and CTA_FILTER.
func (f Filter) attributes(family netfilter.ProtoFamily) []netfilter.Attribute {
	flags := uint32(ctaFilterFlagProtoNum)
	proto := []netfilter.Attribute{{Type: ctaProtoNum, Data: []byte{f.Proto}}}
	if f.DstPort != 0 {
		flags |= ctaFilterFlagDstPort
		proto = append(proto, netfilter.Attribute{Type: ctaProtoDstPort, Data: binary.BigEndian.AppendUint16(nil, f.DstPort)})
	}
	tuple := []netfilter.Attribute{}
	// IPv6 addresses are filtered here, not by the kernel: on the kernel
	// tried (6.18) a dump filtered on an IPv6 destination address returned
	// nothing, although the same entries were there (TestScanFilteredByDestination
	// caught it), so the kernel filters IPv6 by protocol and port, and dump
	// matches the address.
	if f.Dst.IsValid() && family == netfilter.ProtoIPv4 {
		flags |= ctaFilterFlagIPDst
		ip := netfilter.Attribute{Type: ctaIPv4Dst, Data: f.Dst.Unmap().AsSlice()}
		tuple = append(tuple, netfilter.Attribute{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{ip}})
	}
	tuple = append(tuple, netfilter.Attribute{Type: ctaTupleProto, Nested: true, Children: proto})
	return []netfilter.Attribute{
		{Type: ctaTupleOrig, Nested: true, Children: tuple},
		{Type: ctaFilter, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaFilterOrigFlags, Data: binary.NativeEndian.AppendUint32(nil, flags)},
			{Type: ctaFilterReplyFlags, Data: binary.NativeEndian.AppendUint32(nil, 0)},
		}},
	}
}

// ScanStats are the figures of one scan.
type ScanStats struct {
	Scanned int // entries of the protocol read
	Filter  bool
	// Source is where the entries came from: "kernel" (a dump), "index"
	// (the agent's memory), "lookup" (GETs by tuple).
	Source string
}

// Scan streams the table's UDP entries through fn, one IP family after the
// other. Unlike conntrack's Dump, which buffers the whole table before
// decoding it, it reads one netlink datagram at a time, so its memory does
// not grow with the table. The kernel filters by protocol (CTA_FILTER, Linux
// 5.8+); on an older kernel Scan reads every entry and filters in Go.
func (n *Netlink) Scan(ctx context.Context, fn func(Flow)) (ScanStats, error) {
	return n.ScanProtocol(ctx, protoUDP, fn)
}

// ScanProtocol is Scan for the entries of one IP protocol (17 UDP, 6 TCP).
func (n *Netlink) ScanProtocol(ctx context.Context, proto uint8, fn func(Flow)) (ScanStats, error) {
	return n.ScanFiltered(ctx, []Filter{{Proto: proto}}, fn)
}

// ScanFiltered streams the entries that match any of the filters through
// fn (an entry matching two filters is passed twice: give disjoint ones).
// Each filter is one dump per family; the kernel walks its table for each,
// and only matching entries are decoded here.
func (n *Netlink) ScanFiltered(ctx context.Context, filters []Filter, fn func(Flow)) (ScanStats, error) {
	var stats ScanStats
	fd, err := n.socket(true, 0, nil)
	if err != nil {
		return stats, err
	}
	defer unix.Close(fd)
	stats.Filter = true
	for _, filter := range filters {
		for _, family := range filter.families() {
			err := dump(ctx, fd, family, filter, stats.Filter, &stats, fn)
			if stats.Filter && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
				stats.Filter = false // kernel without CTA_FILTER: filter in Go from now on
				err = dump(ctx, fd, family, filter, false, &stats, fn)
			}
			if err != nil {
				return stats, err
			}
		}
	}
	return stats, nil
}

// socket opens a ctnetlink socket in the namespace (a socket keeps the
// namespace it was made in, whichever thread then uses it): the dump socket's
// receive buffer when recvBuffer, setup (socket options) before the bind to
// these multicast groups (0: none). On error nothing stays open.
func (n *Netlink) socket(recvBuffer bool, groups uint32, setup func(fd int) error) (int, error) {
	fd := -1
	err := n.inNetNS(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER); err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		if recvBuffer && n.RecvBuffer > 0 {
			// Force the size past rmem_max when allowed (CAP_NET_ADMIN), else ask for it.
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n.RecvBuffer) != nil {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n.RecvBuffer)
			}
		}
		if setup != nil {
			if err := setup(fd); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
			return fmt.Errorf("netlink bind: %w", err)
		}
		return nil
	})
	if err != nil && fd >= 0 {
		unix.Close(fd)
		fd = -1
	}
	return fd, err
}

// dump runs one dump request and decodes its replies as they arrive.
func dump(ctx context.Context, fd int, family netfilter.ProtoFamily, filter Filter, kernelFilter bool, stats *ScanStats, fn func(Flow)) error {
	var attrs []netfilter.Attribute
	if kernelFilter {
		attrs = filter.attributes(family)
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ipctnlMsgCtGet, Family: family,
		Flags: netlink.Request | netlink.Dump,
	}, attrs)
	if err != nil {
		return err
	}
	req.Header.Sequence = uint32(family)
	req.Header.Length = uint32(unix.NLMSG_HDRLEN + len(req.Data)) // netlink.Conn would fill it in
	b, err := req.MarshalBinary()
	if err != nil {
		return err
	}
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 1<<16)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		nr, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
		if err != nil {
			return fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
						return syscall.Errno(-errno)
					}
				}
				continue
			}
			fl, ok := decodeTuples(m.Data)
			if !ok || !filter.match(fl) {
				continue
			}
			stats.Scanned++
			fn(fl)
		}
	}
}

// Lookup reads the entries with these original tuples, one GET each.
func (n *Netlink) Lookup(ctx context.Context, flows []Flow) ([]Flow, error) {
	if len(flows) == 0 {
		return nil, nil
	}
	c, err := conntrack.Dial(&netlink.Config{NetNS: n.NetNS})
	if err != nil {
		return nil, fmt.Errorf("conntrack dial: %w", err)
	}
	defer c.Close()
	var out []Flow
	for _, f := range flows {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		cur, err := c.Get(f.query())
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("%v -> %v: %w", f.OrigSrc, f.OrigDst, err)
		}
		out = append(out, Flow{Proto: f.Proto, OrigSrc: f.OrigSrc, OrigDst: f.OrigDst,
			ReplySrc: netip.AddrPortFrom(cur.TupleReply.IP.SourceAddress, cur.TupleReply.Proto.SourcePort)})
	}
	return out, nil
}

// query is the flow that names the entry to the kernel, for Lookup (Delete
// builds its own requests, delete.go). The kernel finds the entry by the
// original tuple; the reply tuple is filled too because ti-mo/conntrack
// picks the IPv6 family only when both tuples are IPv6 (with the original
// alone every IPv6 delete failed with EINVAL). The kernel ignores the reply
// tuple when the original one is given.
func (f Flow) query() conntrack.Flow {
	replySrc := f.ReplySrc
	if !replySrc.IsValid() || replySrc.Addr().Is4() != f.OrigSrc.Addr().Is4() {
		replySrc = f.OrigDst
	}
	return conntrack.Flow{
		TupleOrig: conntrack.Tuple{
			IP:    conntrack.IPTuple{SourceAddress: f.OrigSrc.Addr(), DestinationAddress: f.OrigDst.Addr()},
			Proto: conntrack.ProtoTuple{Protocol: f.Proto, SourcePort: f.OrigSrc.Port(), DestinationPort: f.OrigDst.Port()},
		},
		TupleReply: conntrack.Tuple{
			IP:    conntrack.IPTuple{SourceAddress: replySrc.Addr(), DestinationAddress: f.OrigSrc.Addr()},
			Proto: conntrack.ProtoTuple{Protocol: f.Proto, SourcePort: replySrc.Port(), DestinationPort: f.OrigSrc.Port()},
		},
	}
}

// inNetNS runs fn on an OS thread moved into the namespace (package netns:
// the thread returns to the runtime only once back where it was).
func (n *Netlink) inNetNS(fn func() error) error {
	if n.NetNS == 0 {
		return fn()
	}
	return netns.Do(n.NetNS, fn)
}

// LocalAddrs lists the addresses of the namespace, where NodePorts are
// reached.
func (n *Netlink) LocalAddrs() ([]netip.Addr, error) {
	var out []netip.Addr
	err := n.inNetNS(func() error {
		var err error
		out, err = InterfaceAddrs()
		return err
	})
	return out, err
}
