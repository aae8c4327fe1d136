package conntrackagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// deleteBatch is how many delete requests go to the kernel in one sendmsg
// before their answers are read: one round trip per batch instead of per
// entry (the kernel processes the datagram's messages in order and answers
// each, by sequence number).
const deleteBatch = 256

// Delete deletes the entries by their original tuple, over Workers netlink
// sockets, each sending its share in batches, and says what the kernel did
// with each (outcomes[i] is flows[i]'s). Entries that vanished in the
// meantime (timed out, deleted by kube-proxy) are Vanished, not errors; the
// error joins the first few failures.
func (n *Netlink) Delete(ctx context.Context, flows []Flow) ([]Outcome, error) {
	outcomes := make([]Outcome, len(flows))
	if len(flows) == 0 {
		return outcomes, nil
	}
	workers := max(1, min(n.Workers, (len(flows)+deleteBatch-1)/deleteBatch))
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	share := (len(flows) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*share, min(len(flows), (w+1)*share)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.deleteRange(ctx, flows[lo:hi], outcomes[lo:hi])
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return outcomes, errors.Join(errs...)
}

// deleteRange deletes flows on one socket, batch after batch.
func (n *Netlink) deleteRange(ctx context.Context, flows []Flow, outcomes []Outcome) error {
	fd, err := n.socket(false, 0, func(fd int) error {
		// Answers carry only the error, not the request back.
		_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
		return nil
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var failures []error
	buf := make([]byte, 1<<16)
	for start := 0; start < len(flows); start += deleteBatch {
		if ctx.Err() != nil {
			break // the rest stay NotTried
		}
		end := min(len(flows), start+deleteBatch)
		var req []byte
		for i := start; i < end; i++ {
			b, err := deleteRequest(flows[i], uint32(i+1))
			if err != nil {
				outcomes[i] = Failed
				failures = append(failures, err)
				continue
			}
			req = append(req, b...)
		}
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return errors.Join(append(failures, fmt.Errorf("netlink send: %w", err))...)
		}
		answered := 0
		want := end - start
		for i := start; i < end; i++ {
			if outcomes[i] == Failed {
				want--
			}
		}
		for answered < want {
			nr, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return errors.Join(append(failures, fmt.Errorf("netlink receive: %w", err))...)
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
			if err != nil {
				return errors.Join(append(failures, fmt.Errorf("netlink parse: %w", err))...)
			}
			for _, m := range msgs {
				if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
					continue
				}
				i := int(m.Header.Seq) - 1
				if i < start || i >= end {
					continue
				}
				answered++
				switch errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data[:4]))); errno {
				case 0:
					outcomes[i] = Deleted
				case unix.ENOENT:
					outcomes[i] = Vanished
				default:
					outcomes[i] = Failed
					if len(failures) < 5 {
						failures = append(failures, fmt.Errorf("%v -> %v: %w", flows[i].OrigSrc, flows[i].OrigDst, errno))
					}
				}
			}
		}
	}
	return errors.Join(failures...)
}

// deleteRequest is the netlink message that deletes f's entry: its
// original tuple, the family set from it (the kernel finds the entry by the
// original tuple alone).
func deleteRequest(f Flow, seq uint32) ([]byte, error) {
	family := netfilter.ProtoIPv4
	srcT, dstT := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	src, dst := f.OrigSrc.Addr().Unmap(), f.OrigDst.Addr().Unmap()
	if src.Is6() {
		family, srcT, dstT = netfilter.ProtoIPv6, ctaIPv6Src, ctaIPv6Dst
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("%v -> %v: mixed address families", f.OrigSrc, f.OrigDst)
	}
	tuple := []netfilter.Attribute{
		{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{
			{Type: srcT, Data: src.AsSlice()}, {Type: dstT, Data: dst.AsSlice()}}},
		{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaProtoNum, Data: []byte{f.Proto}},
			{Type: ctaProtoSrcPort, Data: binary.BigEndian.AppendUint16(nil, f.OrigSrc.Port())},
			{Type: ctaProtoDstPort, Data: binary.BigEndian.AppendUint16(nil, f.OrigDst.Port())}}},
	}
	msg, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ipctnlMsgCtDelete, Family: family,
		Flags: netlink.Request | netlink.Acknowledge,
	}, []netfilter.Attribute{{Type: ctaTupleOrig, Nested: true, Children: tuple}})
	if err != nil {
		return nil, err
	}
	msg.Header.Sequence = seq
	msg.Header.Length = uint32(unix.NLMSG_HDRLEN + len(msg.Data))
	return msg.MarshalBinary()
}
