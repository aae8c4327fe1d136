package localplane

import (
	"io"
	"net"
	"net/url"
	"sync"

	"k8s.io/client-go/rest"
)

// Outage stands between clients and the plane's API server: Down closes
// every connection and refuses new ones, as an API server that stops (an
// outage, a control-plane upgrade) does to its clients; Up serves again on
// the same address. envtest cannot restart kube-apiserver with the same
// certificates, so fault-injection tests cut the outage in front of it.
type Outage struct {
	// Config reaches the API server through the outage, as cluster admin.
	Config *rest.Config
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

// NewOutage starts a pass-through to the API server; Close ends it.
func (p *Plane) NewOutage() (*Outage, error) {
	api, err := url.Parse(p.Config.Host)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &Outage{addr: ln.Addr().String(), target: api.Host, conns: map[net.Conn]bool{}}
	o.Config = rest.CopyConfig(p.Config)
	o.Config.Host = "https://" + o.addr
	o.serve(ln)
	return o, nil
}

func (o *Outage) serve(ln net.Listener) {
	o.mu.Lock()
	o.ln = ln
	o.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", o.target)
			if err != nil {
				in.Close()
				continue
			}
			o.mu.Lock()
			o.conns[in], o.conns[out] = true, true
			o.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

// Down cuts every connection and refuses new ones.
func (o *Outage) Down() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln != nil {
		o.ln.Close()
		o.ln = nil
	}
	for c := range o.conns {
		c.Close()
	}
	o.conns = map[net.Conn]bool{}
}

// Up serves again, on the same address.
func (o *Outage) Up() error {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	o.serve(ln)
	return nil
}

// Close ends the pass-through.
func (o *Outage) Close() { o.Down() }
