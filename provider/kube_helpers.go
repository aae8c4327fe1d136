package provider

import (
	"crypto/tls"
	"crypto/x509"
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
	var (
		status     apierrors.APIStatus
		unknownCA  x509.UnknownAuthorityError
		badCert    x509.CertificateInvalidError
		badHost    x509.HostnameError
		verifyCert *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownCA) || errors.As(err, &badCert) || errors.As(err, &badHost) || errors.As(err, &verifyCert):
		// An answer, from a server whose certificate is not trusted: not a
		// network problem, and not the credentials.
		return fmt.Sprintf("The API server at %s presented a certificate the provider does not trust: %v. Set "+
			"kubernetes.cluster_ca_certificate (or the kubeconfig's certificate-authority-data) to the cluster's CA, "+
			"and check that kubernetes.host is a name the certificate is for.", host, err)
	case apierrors.IsUnauthorized(err) || strings.Contains(err.Error(), "Unauthorized"):
		// Said the same whether a write or a discovery (refresh) met it.
		return fmt.Sprintf("The API server at %s refused the credentials (Unauthorized): %v. Check kubernetes.token "+
			"(or the kubeconfig's user): it may be expired or for another cluster.", host, err)
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("The API server at %s answered Forbidden: %v. The credentials are valid but lack a "+
			"permission: grant the verb and resource the message names to the provider's user.", host, err)
	case errors.As(err, &status):
		return fmt.Sprintf("The API server at %s answered: %v. Check the credentials in the provider's kubernetes block.", host, err)
	}
	return fmt.Sprintf("No answer from the API server at %s: %v. Check kubernetes.host (or the kubeconfig's "+
		"server) and that the cluster is up and reachable from where terraform runs.", host, err)
}
