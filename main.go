// Command terraform-provider-telemetry serves the telemetry provider to
// Terraform. The nlb-policy controller and the conntrack agent are separate
// binaries under controllers/.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/version"
	"github.com/telemetry-platform/terraform-provider-telemetry/provider"
)

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run the provider with support for debuggers like delve")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String("terraform-provider-telemetry"))
		return
	}

	quietSDKLogs()

	// For profiling a terraform run (bench/README.md): each provider process
	// terraform starts writes its CPU profile to <path>.<pid>.
	if path := os.Getenv("TF_PROVIDER_TELEMETRY_CPUPROFILE"); path != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid())); err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}

	err := providerserver.Serve(context.Background(), provider.New(version.Version), providerserver.ServeOpts{
		Address: provider.Address,
		Debug:   debug,
	})
	if err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err.Error())
	}
}

// quietSDKLogs switches off the framework's and the protocol's own logs when
// nothing asks for logs: they go to Terraform at TRACE level whatever
// TF_LOG says, and Terraform drops them unless TF_LOG or TF_LOG_PROVIDER is
// set; writing them was a quarter of the provider's CPU in a plan of 1,000
// sites (bench/README.md). Any of the variables set keeps them as they were.
func quietSDKLogs() {
	for _, v := range []string{"TF_LOG", "TF_LOG_PROVIDER", "TF_LOG_SDK", "TF_LOG_SDK_FRAMEWORK", "TF_LOG_SDK_PROTO"} {
		if os.Getenv(v) != "" {
			return
		}
	}
	_ = os.Setenv("TF_LOG_SDK_FRAMEWORK", "OFF")
	_ = os.Setenv("TF_LOG_SDK_PROTO", "OFF")
}
