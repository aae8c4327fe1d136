package conntrackagent

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ctnetlink's event groups (nfnetlink.h) and message types.
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
// protocol's (a multicast group has no filter), decoded tuples only.
func (n *Netlink) Watch(ctx context.Context, fn func(Flow, bool), lost func()) (<-chan error, error) {
	var fd int
	err := n.inNetNS(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		if n.RecvBuffer > 0 {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n.RecvBuffer) != nil {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n.RecvBuffer)
			}
		}
		groups := uint32(1<<(nfnlgrpConntrackNew-1) | 1<<(nfnlgrpConntrackDestroy-1))
		err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups})
		if err != nil {
			err = fmt.Errorf("netlink bind to the conntrack event groups: %w", err)
		} else {
			// A receive timeout, so the reader sees ctx end.
			err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
		}
		if err != nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 1<<16)
		for {
			if ctx.Err() != nil {
				errc <- nil
				return
			}
			nr, _, err := unix.Recvfrom(fd, buf, 0)
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOBUFS):
				lost()
				continue
			case err != nil:
				errc <- fmt.Errorf("netlink receive (conntrack events): %w", err)
				return
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
			if err != nil {
				lost() // a datagram we cannot read: its events are lost to us
				continue
			}
			for _, m := range msgs {
				if m.Header.Type>>8 != nfnlSubsysCTNetlink {
					continue
				}
				typ := m.Header.Type & 0xff
				if typ != ipctnlMsgCtNew && typ != ipctnlMsgCtDelete {
					continue
				}
				f, ok := decodeTuples(m.Data)
				if !ok || f.Proto != protoUDP {
					continue
				}
				fn(f, typ == ipctnlMsgCtDelete)
			}
		}
	}()
	return errc, nil
}
