// Command localplane runs the local control plane in the foreground for a
// person (`make up`): a real kube-apiserver and etcd with the Calico and
// Strimzi CRDs, and moto_server seeded as a small AWS account. It prints how
// to point kubectl, terraform and the AWS CLI at it; Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

func main() {
	nodes := flag.Int("nodes", 2, "EC2 instances and Node objects to seed")
	envFile := flag.String("env-file", "", "also write the environment variables to this file, for scripts")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Println("starting kube-apiserver, etcd and moto_server ...")
	p, err := localplane.Start(ctx, localplane.Options{Nodes: *nodes})
	if err != nil {
		fmt.Fprintln(os.Stderr, "localplane:", err)
		os.Exit(1)
	}
	defer func() {
		fmt.Println("\nstopping ...")
		if err := p.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "localplane:", err)
		}
	}()

	env := fmt.Sprintf(`export KUBECONFIG=%s
export KUBE_CONFIG_PATH=%s
export AWS_REGION=%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s
export AWS_ENDPOINT_URL=%s
`, p.Kubeconfig, p.Kubeconfig, p.AWS.Region, localplane.AccessKeyID, localplane.SecretAccessKey, p.AWS.Endpoint)
	if *envFile != "" {
		abs, _ := filepath.Abs(*envFile)
		if err := os.WriteFile(abs, []byte(env), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "localplane:", err)
			return
		}
		fmt.Println("environment written to", abs)
	}

	fmt.Printf("\nLocal control plane is up (Kubernetes API %s, AWS API %s).\n\n", p.Config.Host, p.AWS.Endpoint)
	fmt.Println("In another shell:")
	fmt.Print(indent(env))
	fmt.Print(`
  kubectl get nodes,crds
  aws ec2 describe-subnets                  # any AWS CLI or SDK honours AWS_ENDPOINT_URL
  terraform plan                            # the provider reads KUBE_CONFIG_PATH and AWS_*

`)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "VPC\t%s\t%s\n", p.AWS.VPCID, p.AWS.VPCCIDR)
	for _, s := range p.AWS.Subnets {
		fmt.Fprintf(w, "subnet\t%s\t%s\t%s\n", s.ID, s.CIDR, s.AZ)
	}
	fmt.Fprintf(w, "node security group\t%s\n", p.AWS.NodeSecurityGroupID)
	for _, i := range p.AWS.Instances {
		fmt.Fprintf(w, "node\t%s\t%s\t%s\n", i.NodeName, i.ID, i.PrivateIP)
	}
	w.Flush()
	fmt.Println("\nCtrl-C stops everything.")
	<-ctx.Done()
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString("  " + line)
	}
	return b.String() + "\n"
}
