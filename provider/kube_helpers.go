package provider

import (
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// Kubernetes helpers shared by the resources and data sources: import IDs,
// the KafkaTopic version the API server serves, and what to say when the
// API server cannot be reached.

// splitID splits an import ID "<namespace>/<name>".
func splitID(id string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(id, "/")
	if !ok || ns == "" || n == "" || strings.Contains(n, "/") {
		return "", "", errors.New(`expected "<namespace>/<name>", got "` + id + `"`)
	}
	return ns, n, nil
}

// servedKafkaTopicVersion is the newest KafkaTopic version the API server
// serves, or "" when none is. It is asked at apply time, never at plan time.
func servedKafkaTopicVersion(d discovery.DiscoveryInterface) (string, error) {
	for _, v := range kubeapi.KafkaTopicVersions {
		ok, err := servesResource(d, kubeapi.StrimziGroup+"/"+v, "kafkatopics")
		if err != nil {
			return "", err
		}
		if ok {
			return v, nil
		}
	}
	return "", nil
}

// kubeReachError phrases a failed first contact with the API server.
func kubeReachError(c *clients, err error) string {
	host := "(unknown host)"
	if c.restCfg != nil {
		host = c.restCfg.Host
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return fmt.Sprintf("The API server at %s answered: %v. Check the credentials in the provider's kubernetes block.", host, err)
	}
	return fmt.Sprintf("No answer from the API server at %s: %v. Check kubernetes.host (or the kubeconfig's "+
		"server) and that the cluster is up and reachable from where terraform runs.", host, err)
}
