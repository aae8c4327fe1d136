package localplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Pool shares a package's planes between its tests without letting them
// meet: a test takes a plane for itself (Take) and gives it back when it
// ends, so tests that call t.Parallel run side by side on different planes,
// each alone on the one it holds (it may start the nlb-policy controller,
// stop it, or count on no other controller running), and a plane starts
// once for many tests instead of once a test. What a test leaves on its
// plane the next one finds, as when all shared one plane in turn.
type Pool struct {
	opts Options
	// tokens holds one per plane that may exist; Take waits for one.
	tokens chan struct{}

	mu   sync.Mutex
	free []*Plane
	all  []*Plane
	held map[string]*Plane // by the holding test's name
}

// PoolSizeEnv overrides a pool's size (TEST_PLANES=1: every test of the
// package on one plane, in turn).
const PoolSizeEnv = "TEST_PLANES"

// NewPool is a pool of at most size planes started with opts (size is
// overridden by TEST_PLANES). Planes start on first need; Stop ends them.
func NewPool(opts Options, size int) *Pool {
	if n, err := strconv.Atoi(os.Getenv(PoolSizeEnv)); err == nil && n > 0 {
		size = n
	}
	if size < 1 {
		size = 1
	}
	return &Pool{opts: opts, tokens: make(chan struct{}, size), held: map[string]*Plane{}}
}

// Take gives the test a plane of its own until it ends (its cleanups, those
// registered after Take first, run before the plane goes back). A subtest
// of a test holding a plane gets its parent's, so nesting never waits on
// itself. A plane that does not start fails the test.
func (pool *Pool) Take(t testing.TB) *Plane {
	t.Helper()
	if p := pool.heldByAncestor(t.Name()); p != nil {
		return p
	}
	HoldSlot(t)
	pool.tokens <- struct{}{}
	pool.mu.Lock()
	var p *Plane
	if n := len(pool.free); n > 0 {
		p, pool.free = pool.free[n-1], pool.free[:n-1]
	}
	pool.mu.Unlock()
	if p == nil {
		var err error
		if p, err = Start(context.Background(), pool.opts); err != nil {
			<-pool.tokens
			t.Fatalf("local control plane: %v", err)
		}
		pool.mu.Lock()
		pool.all = append(pool.all, p)
		pool.mu.Unlock()
	}
	pool.mu.Lock()
	pool.held[t.Name()] = p
	pool.mu.Unlock()
	t.Cleanup(func() {
		pool.mu.Lock()
		delete(pool.held, t.Name())
		pool.free = append(pool.free, p)
		pool.mu.Unlock()
		<-pool.tokens
	})
	return p
}

func (pool *Pool) heldByAncestor(name string) *Plane {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for holder, p := range pool.held {
		if strings.HasPrefix(name, holder+"/") || name == holder {
			return p
		}
	}
	return nil
}

// Stop ends every plane the pool started (TestMain calls it after m.Run).
func (pool *Pool) Stop() error {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	var errs []error
	for i, p := range pool.all {
		if err := p.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("plane %d: %w", i, err))
		}
	}
	pool.all, pool.free = nil, nil
	return errors.Join(errs...)
}
