// Package awsfaults is a proxy in front of moto that answers some AWS calls
// with errors, as AWS does under load or when a permission is withdrawn:
// every call of the actions set to fail gets UnauthorizedOperation (not
// retried), and a share of all other calls Throttling (which the SDK
// retries with backoff). moto cannot do either.
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
		if code == "Throttling" {
			status = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
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
