package conntrackagent

import (
	"encoding/binary"
	"net/netip"
)

// decodeTuples reads only the original and reply tuples of a ctnetlink flow
// message (after its netlink header): the agent needs nothing else, and
// decoding every attribute of a million entries (conntrack's Flow) is most of
// a pass's time. The layout is the kernel's (nfnetlink_conntrack.h):
// nfgenmsg, then CTA_TUPLE_ORIG/REPLY { CTA_TUPLE_IP { src, dst },
// CTA_TUPLE_PROTO { num, sport, dport } }. A differential test checks it
// against conntrack's decoding on real entries.
func decodeTuples(msg []byte) (Flow, bool) {
	const nfgenmsgLen = 4
	if len(msg) < nfgenmsgLen {
		return Flow{}, false
	}
	var f Flow
	var origSrc, origDst, replySrc netip.Addr
	var sport, dport, rsport uint16
	seen := 0
	forEachAttr(msg[nfgenmsgLen:], func(typ uint16, data []byte) {
		if typ != ctaTupleOrig && typ != ctaTupleReply {
			return
		}
		seen++
		var src, dst netip.Addr
		var proto uint8
		var sp, dp uint16
		forEachAttr(data, func(t uint16, d []byte) {
			switch t {
			case ctaTupleIP:
				forEachAttr(d, func(ipt uint16, a []byte) {
					switch {
					case (ipt == ctaIPv4Src || ipt == ctaIPv4Dst) && len(a) == 4:
						addr := netip.AddrFrom4([4]byte(a))
						if ipt == ctaIPv4Src {
							src = addr
						} else {
							dst = addr
						}
					case (ipt == ctaIPv6Src || ipt == ctaIPv6Dst) && len(a) == 16:
						addr := netip.AddrFrom16([16]byte(a))
						if ipt == ctaIPv6Src {
							src = addr
						} else {
							dst = addr
						}
					}
				})
			case ctaTupleProto:
				forEachAttr(d, func(pt uint16, a []byte) {
					switch {
					case pt == ctaProtoNum && len(a) >= 1:
						proto = a[0]
					case pt == ctaProtoSrcPort && len(a) >= 2:
						sp = binary.BigEndian.Uint16(a)
					case pt == ctaProtoDstPort && len(a) >= 2:
						dp = binary.BigEndian.Uint16(a)
					}
				})
			}
		})
		if typ == ctaTupleOrig {
			origSrc, origDst, sport, dport, f.Proto = src, dst, sp, dp, proto
		} else {
			replySrc, rsport = src, sp
		}
	})
	if seen != 2 || !origSrc.IsValid() || !replySrc.IsValid() {
		return Flow{}, false
	}
	f.OrigSrc = netip.AddrPortFrom(origSrc, sport)
	f.OrigDst = netip.AddrPortFrom(origDst, dport)
	f.ReplySrc = netip.AddrPortFrom(replySrc, rsport)
	return f, true
}

// Attribute types of nfnetlink_conntrack.h used by decodeTuples.
const (
	ctaTupleReply   = 2
	ctaTupleIP      = 1
	ctaIPv4Src      = 1
	ctaIPv4Dst      = 2
	ctaIPv6Src      = 3
	ctaIPv6Dst      = 4
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3
)

// forEachAttr walks netlink attributes (struct nlattr: u16 length including
// the 4-byte header, u16 type with the nested and byte-order flags in its two
// top bits, payload padded to 4 bytes), stopping at the first malformed one.
func forEachAttr(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & 0x3fff
		if l < 4 || l > len(b) {
			return
		}
		fn(typ, b[4:l])
		next := (l + 3) &^ 3
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}
