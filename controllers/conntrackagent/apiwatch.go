package conntrackagent

import (
	"context"
)

// The API server watch: the agent acts on what its informers last saw, so it
// must say when it cannot see (logged, and not ready), and see the cluster
// again as soon as the API server answers (its informers restarted, not left
// to client-go's backoff), whether the outage began before it started or
// while it ran.

// watchAPI asks the API server every APICheck whether it is there, and
// logs each change (client-go's own retries log below the default
// verbosity, so an outage was silent).
func (a *Agent) watchAPI(ctx context.Context) {
	t := a.Clock.NewTicker(a.APICheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		err := a.checkAPI(ctx)
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		was := a.apiDown
		a.apiDown = err
		a.mu.Unlock()
		switch {
		case err != nil && was == nil:
			a.Log.Error(err, "API server unreachable: the agent acts on the Services and endpoints it saw last and sees no change; not ready until it answers")
		case err == nil && was != nil:
			a.Log.Info("API server reachable again: restarting the informers to see the cluster at once")
			if err := a.startInformers(ctx); err != nil {
				if ctx.Err() == nil {
					a.Log.Error(err, "restarting the informers; the old ones resume after their backoff")
				}
				continue
			}
			a.kick("api server back")
		}
	}
}

// checkAPI asks the API server's /readyz, for at most APICheck.
func (a *Agent) checkAPI(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, a.APICheck)
	defer cancel()
	return a.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(cctx).Error()
}

// waitForAPI returns once the API server answers, checking every APICheck;
// while it does not, the agent says so (once) and is not ready.
func (a *Agent) waitForAPI(ctx context.Context) error {
	for logged := false; ; {
		err := a.checkAPI(ctx)
		a.mu.Lock()
		a.apiDown = err
		a.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if logged {
				a.Log.Info("API server reachable: starting")
			}
			return nil
		case !logged:
			a.Log.Error(err, "API server unreachable at start: waiting for it; no pass runs and the agent is not ready until it answers")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.Clock.After(a.APICheck):
		}
	}
}
