package conntrackagent

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Index is the agent's copy of the node's UDP conntrack entries, built by
// a full pass (which reads them all) and kept current from conntrack events
// (Watcher). A pass triggered by one Service takes that Service's entries
// from it: no table walk in the kernel, which costs about 0.4-0.8 µs per
// entry of the whole table per dump (bench/README.md).
//
// It is complete only while nothing was lost since the watch began before a
// full pass: a lost event (the kernel's socket buffer overflowed), a watch
// that ended, or more entries than max make it incomplete, and passes read
// the kernel again until a full pass has rebuilt it. It may hold an entry
// the kernel no longer has (a dump and a destroy event racing): the full
// pass sweeps those (each entry carries the epoch of the pass or event that
// last saw it), and deleting one is answered "vanished", not acted on.
type Index struct {
	mu     sync.Mutex
	max    int
	n      int
	byPort map[uint16]map[indexKey]indexEntry // by original destination port
	epoch  uint32
	// complete: watching since before the last full pass began, nothing
	// lost since; watching: a watch runs; lostSince: an event was lost
	// since the current full pass began.
	complete, watching, lostSince, over bool
}

// indexKey is an entry's original source and destination, 16-byte
// addresses (IPv4 mapped) and ports: 36 bytes, no pointers.
type indexKey struct {
	src, dst [16]byte
	sport    [2]byte
	dport    [2]byte
}

type indexEntry struct {
	reply [16]byte
	rport [2]byte
	epoch uint32
}

func compact(a netip.AddrPort) ([16]byte, [2]byte) {
	return a.Addr().As16(), [2]byte{byte(a.Port() >> 8), byte(a.Port())}
}

func expand(a [16]byte, p [2]byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), uint16(p[0])<<8|uint16(p[1]))
}

// NewIndex is an empty, incomplete index of at most max entries.
func NewIndex(max int) *Index {
	return &Index{max: max, byPort: map[uint16]map[indexKey]indexEntry{}}
}

func keyFor(f Flow) indexKey {
	var k indexKey
	k.src, k.sport = compact(f.OrigSrc)
	k.dst, k.dport = compact(f.OrigDst)
	return k
}

// Put records a UDP entry (an event, or an entry a full pass read).
func (x *Index) Put(f Flow) {
	if f.Proto != protoUDP {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.over {
		return
	}
	port := f.OrigDst.Port()
	m := x.byPort[port]
	if m == nil {
		m = map[indexKey]indexEntry{}
		x.byPort[port] = m
	}
	k := keyFor(f)
	var e indexEntry
	e.reply, e.rport = compact(f.ReplySrc)
	e.epoch = x.epoch
	if _, ok := m[k]; !ok {
		if x.n >= x.max {
			x.overflowLocked()
			return
		}
		x.n++
	}
	m[k] = e
}

// Remove forgets an entry (destroyed, or found gone).
func (x *Index) Remove(f Flow) {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.byPort[f.OrigDst.Port()]
	k := keyFor(f)
	if _, ok := m[k]; ok {
		delete(m, k)
		x.n--
		if len(m) == 0 {
			delete(x.byPort, f.OrigDst.Port())
		}
	}
}

// overflowLocked drops the content: past max the index is not kept (the
// memory it would take), and passes read the kernel.
func (x *Index) overflowLocked() {
	x.over, x.complete = true, false
	x.byPort = map[uint16]map[indexKey]indexEntry{}
	x.n = 0
}

// Lost marks the index incomplete (events were dropped).
func (x *Index) Lost() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.complete, x.lostSince = false, true
}

// Watching says whether a watch runs; a watch that ended leaves the index
// incomplete.
func (x *Index) Watching(on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.watching = on
	if !on {
		x.complete, x.lostSince = false, true
	}
}

// BeginFull starts a full pass's rebuild: a new epoch, and a fresh chance
// for the index to be complete (and to hold max entries again).
func (x *Index) BeginFull() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.epoch++
	x.lostSince = !x.watching
	x.over = false
}

// EndFull ends a full pass that read the whole UDP table (ok): entries
// neither the pass nor an event saw since it began are swept, and the index
// is complete if the watch ran throughout and nothing was lost.
func (x *Index) EndFull(ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !ok || x.over {
		x.complete = false
		return
	}
	for port, m := range x.byPort {
		for k, e := range m {
			if e.epoch != x.epoch {
				delete(m, k)
				x.n--
			}
		}
		if len(m) == 0 {
			delete(x.byPort, port)
		}
	}
	x.complete = x.watching && !x.lostSince
}

// Select calls fn with the entries matching the filters, and says false
// (calling nothing) when the index is incomplete: the caller reads the
// kernel instead.
func (x *Index) Select(filters []Filter, fn func(Flow)) (n int, ok bool) {
	x.mu.Lock()
	if !x.complete {
		x.mu.Unlock()
		return 0, false
	}
	var out []Flow
	for _, fl := range filters {
		if fl.Proto != protoUDP {
			x.mu.Unlock()
			return 0, false
		}
		ports := []uint16{fl.DstPort}
		if fl.DstPort == 0 {
			ports = ports[:0]
			for p := range x.byPort {
				ports = append(ports, p)
			}
		}
		for _, p := range ports {
			for k, e := range x.byPort[p] {
				f := Flow{Proto: protoUDP, OrigSrc: expand(k.src, k.sport), OrigDst: expand(k.dst, k.dport), ReplySrc: expand(e.reply, e.rport)}
				if fl.match(f) {
					out = append(out, f)
				}
			}
		}
	}
	x.mu.Unlock()
	for _, f := range out {
		fn(f)
	}
	return len(out), true
}

// Len is how many entries the index holds, and whether it is complete.
func (x *Index) Len() (int, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.n, x.complete
}

// watch keeps the index current from conntrack events until ctx ends. A
// watch that fails leaves the index incomplete (passes read the kernel) and
// is tried again every 5 s; the next full pass after it is back rebuilds
// the index. Lost events do the same without a new watch.
func (a *Agent) watch(ctx context.Context, w Watcher) {
	start := func() (<-chan error, error) {
		return w.Watch(ctx, func(f Flow, destroyed bool) {
			if destroyed {
				a.index.Remove(f)
			} else {
				a.index.Put(f)
			}
		}, func() {
			a.index.Lost()
			a.Metrics.eventsLost.Inc()
			a.Log.Info("conntrack events lost (socket buffer full): triggered passes read the kernel until the next full pass rebuilds the index")
		})
	}
	errc, err := start()
	if err != nil {
		a.Log.Error(err, "watching conntrack events: triggered passes read the kernel")
	} else {
		a.index.Watching(true)
	}
	go func() {
		for {
			if errc != nil {
				err := <-errc
				a.index.Watching(false)
				if ctx.Err() != nil {
					return
				}
				a.Log.Error(err, "conntrack event watch ended: triggered passes read the kernel")
			}
			select {
			case <-ctx.Done():
				return
			case <-a.Clock.After(5 * time.Second):
			}
			if errc, err = start(); err != nil {
				errc = nil
				a.Log.Error(err, "watching conntrack events again")
				continue
			}
			a.index.Watching(true)
		}
	}()
}
