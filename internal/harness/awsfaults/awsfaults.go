// Package awsfaults is a proxy in front of moto that answers some AWS calls
// with errors, as AWS does under load or when a permission is withdrawn:
// every call of the actions set to fail gets UnauthorizedOperation (not
// retried), a share of all other calls Throttling (which the SDK retries
// with backoff), and DescribeLoadBalancers naming a load balancer set as
// unknown LoadBalancerNotFound. moto cannot do the first two, and the last
// only in part.
package awsfaults

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Proxy is the faulty endpoint; URL replaces moto's in the clients.
type Proxy struct {
	URL string

	mu       sync.Mutex
	fail     map[string]bool
	throttle float64
	rng      *rand.Rand
	injected map[string]int
	unknown  map[string]bool // load balancer names answered LoadBalancerNotFound
}

// Start proxies to the AWS endpoint at target until the test ends, with no
// fault until Set.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &Proxy{fail: map[string]bool{}, rng: rand.New(rand.NewPCG(7, 8)), injected: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		action := form.Get("Action")
		f.mu.Lock()
		code := ""
		switch {
		case action == "DescribeLoadBalancers" && f.namesUnknown(form):
			code = "LoadBalancerNotFound"
		case f.fail[action]:
			code = "UnauthorizedOperation" // not retried: a permission withdrawn mid-apply
		case action != "" && f.rng.Float64() < f.throttle:
			code = "Throttling"
		}
		if code != "" {
			f.injected[action+" "+code]++
		}
		f.mu.Unlock()
		if code == "" {
			proxy.ServeHTTP(w, r)
			return
		}
		status := http.StatusForbidden
		if code == "Throttling" || code == "LoadBalancerNotFound" {
			status = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		if code == "LoadBalancerNotFound" {
			fmt.Fprint(w, `<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code><Message>One or more load balancers not found</Message></Error><RequestId>fault</RequestId></ErrorResponse>`)
			return
		}
		// EC2's error shape; ELBv2 (and STS) read the same Code from theirs.
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>injected by the test</Message></Error></Errors><RequestID>fault</RequestID></Response>`, code)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// Set replaces the faults: a share of calls throttled, and the actions
// that fail.
func (f *Proxy) Set(throttle float64, fail ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttle, f.fail = throttle, map[string]bool{}
	for _, a := range fail {
		f.fail[a] = true
	}
}

// UnknownLoadBalancers makes every DescribeLoadBalancers call that names
// one of these load balancers fail with LoadBalancerNotFound, as AWS answers
// a call naming any load balancer it does not have (moto 5.2.1 only when
// the unknown name comes before every known one).
func (f *Proxy) UnknownLoadBalancers(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unknown = map[string]bool{}
	for _, n := range names {
		f.unknown[n] = true
	}
}

// namesUnknown reports whether a DescribeLoadBalancers form names an unknown
// load balancer (Names.member.N). Called with f.mu held.
func (f *Proxy) namesUnknown(form url.Values) bool {
	for k, v := range form {
		if strings.HasPrefix(k, "Names.member.") && len(v) > 0 && f.unknown[v[0]] {
			return true
		}
	}
	return false
}

// Injected counts the faults injected, by "<action> <code>".
func (f *Proxy) Injected() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.injected))
	for k, v := range f.injected {
		out[k] = v
	}
	return out
}
