package conntrackagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ctnetlink's event groups (nfnetlink.h) and message types
// (nfnetlink_conntrack.h); IPCTNL_MSG_CT_DELETE is both the DESTROY event
// and the delete request (delete.go).
const (
	nfnlgrpConntrackNew     = 1
	nfnlgrpConntrackDestroy = 3
	ipctnlMsgCtNew          = 0
	ipctnlMsgCtDelete       = 2
	nfnlSubsysCTNetlink     = 1
)

// Watch implements Watcher: a netlink socket in the namespace joined to the
// conntrack NEW and DESTROY groups. A NEW event comes when an entry is
// confirmed (its first packet left the stack, NAT decided), so its reply
// tuple is final. Only UDP entries reach fn; the kernel sends every
// protocol's events to the group; a socket filter (udpEventsOnly) drops the
// others before they reach the agent (TCP churn is most of a node's).
func (n *Netlink) Watch(ctx context.Context, fn func(Flow, bool), lost func()) (<-chan error, error) {
	groups := uint32(1<<(nfnlgrpConntrackNew-1) | 1<<(nfnlgrpConntrackDestroy-1))
	fd, err := n.socket(true, groups, func(fd int) error {
		if err := attachUDPFilter(fd); err != nil {
			return err
		}
		// A receive timeout, so the reader sees ctx end.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
	})
	if err != nil {
		return nil, fmt.Errorf("watching conntrack events: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		defer unix.Close(fd)
		r := newBatchReader(fd)
		// Blocking (up to the receive timeout) until an event comes, then
		// taking only what is there: without MSG_WAITFORONE recvmmsg waits to
		// fill the batch, holding the first event for as long.
		const blocking = unix.MSG_WAITFORONE
		flags := blocking
		for {
			if ctx.Err() != nil {
				errc <- nil
				return
			}
			datagrams, err := r.read(flags)
			switch {
			case errors.Is(err, unix.EAGAIN) && flags == unix.MSG_DONTWAIT:
				// Drained: let events gather for a while rather than waking for
				// each (one wake-up and one read per event cost 13.5 µs an
				// event under churn); the index lags the kernel by at most
				// eventBatchDelay.
				time.Sleep(eventBatchDelay)
				flags = blocking
				continue
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOBUFS):
				lost()
				continue
			case err != nil:
				errc <- fmt.Errorf("netlink receive (conntrack events): %w", err)
				return
			}
			flags = unix.MSG_DONTWAIT // then read what else is there without blocking
			n.eventDatagrams.Add(int64(len(datagrams)))
			for _, d := range datagrams {
				if !eachEvent(d, fn) {
					lost() // a datagram we cannot read: its events are lost to us
				}
			}
		}
	}()
	return errc, nil
}

// eachEvent calls fn with the UDP conntrack events of one datagram, parsed
// in place; false when the datagram is malformed.
func eachEvent(b []byte, fn func(Flow, bool)) bool {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return false
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		data := b[unix.NLMSG_HDRLEN:l]
		b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
		if typ>>8 != nfnlSubsysCTNetlink || (typ&0xff != ipctnlMsgCtNew && typ&0xff != ipctnlMsgCtDelete) {
			continue
		}
		if f, ok := decodeTuples(data); ok && f.Proto == protoUDP {
			fn(f, typ&0xff == ipctnlMsgCtDelete)
		}
	}
	return true
}

// batchReader reads up to eventBatch datagrams per system call
// (recvmmsg(2), which golang.org/x/sys does not wrap).
type batchReader struct {
	fd    int
	bufs  [][]byte
	iov   []unix.Iovec
	msgs  []mmsghdr
	slots [][]byte
}

// mmsghdr is struct mmsghdr (linux/socket.h); Go pads it as C does (to
// the msghdr's alignment).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// eventBatch is how many datagrams (events) one read takes at most.
const eventBatch = 64

func newBatchReader(fd int) *batchReader {
	r := &batchReader{fd: fd, bufs: make([][]byte, eventBatch), iov: make([]unix.Iovec, eventBatch), msgs: make([]mmsghdr, eventBatch)}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, 8<<10) // an event is a few hundred bytes
		r.iov[i].Base = &r.bufs[i][0]
		r.iov[i].SetLen(len(r.bufs[i]))
		r.msgs[i].hdr.Iov = &r.iov[i]
		r.msgs[i].hdr.SetIovlen(1)
	}
	return r
}

func (r *batchReader) read(flags int) ([][]byte, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.msgs[0])), eventBatch, uintptr(flags), 0, 0)
	if errno != 0 {
		return nil, errno
	}
	r.slots = r.slots[:0]
	for i := 0; i < int(n); i++ {
		r.slots = append(r.slots, r.bufs[i][:r.msgs[i].n])
	}
	return r.slots, nil
}

// eventBatchDelay is how long the event reader lets events gather after it
// has drained the socket: at most 1/eventBatchDelay wake-ups a second
// whatever the churn (the socket's buffer holds the events meanwhile).
const eventBatchDelay = 5 * time.Millisecond

// udpEventsOnly is a classic BPF socket filter that drops conntrack events
// of other protocols in the kernel: it finds CTA_TUPLE_ORIG ->
// CTA_TUPLE_PROTO -> CTA_PROTO_NUM with the netlink-attribute extensions
// (as libnetfilter_conntrack's filters do) and keeps the event when that is
// UDP, or when it cannot tell (an attribute not found, a non-linear buffer:
// the agent then decides), so an event is never lost to the filter.
var udpEventsOnly = []bpf.Instruction{
	/* 0 */ bpf.LoadConstant{Dst: bpf.RegA, Val: unix.NLMSG_HDRLEN + 4}, // first attribute, after nfgenmsg
	/* 1 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaTupleOrig},
	/* 2 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttr},
	/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 9},
	/* 4 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaTupleProto},
	/* 5 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttrNested},
	/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 6},
	/* 7 */ bpf.LoadConstant{Dst: bpf.RegX, Val: ctaProtoNum},
	/* 8 */ bpf.LoadExtension{Num: bpf.ExtNetlinkAttrNested},
	/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 3},
	/* 10 */ bpf.TAX{},
	/* 11 */ bpf.LoadIndirect{Off: 4, Size: 1}, // the protocol number, after the attribute's header
	/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoUDP, SkipFalse: 1},
	/* 13 */ bpf.RetConstant{Val: 0xffffffff}, // keep
	/* 14 */ bpf.RetConstant{Val: 0}, // drop
}

func attachUDPFilter(fd int) error {
	raw, err := bpf.Assemble(udpEventsOnly)
	if err != nil {
		return err
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		return fmt.Errorf("attaching the UDP filter to the conntrack event socket: %w", err)
	}
	return nil
}
