// Package bench holds the product's benchmarks. Each measures the product
// and a baseline in the same run, on the local control plane, and reports
// ratios; figures are recorded in bench/README.md with the commands that
// produced them. None runs in `make test` (they are Benchmark functions).
package bench

import (
	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// envtest logs through controller-runtime; benchmarks print only their figures.
func init() { ctrllog.SetLogger(logr.Discard()) }
