// Package kubeapi names the Kubernetes API kinds the product reads and
// writes, and the scheme that holds them: the built-in types, Calico's
// projectcalico.org/v3 (Go types from github.com/projectcalico/api) and
// Strimzi's KafkaTopic, which has no Go module and is handled as
// unstructured data.
package kubeapi

import (
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// StrimziGroup is the API group of Strimzi's custom resources.
const StrimziGroup = "kafka.strimzi.io"

// Names Strimzi defines on KafkaTopics: renaming one breaks the contract
// with Strimzi's operators.
const (
	// StrimziClusterLabel names the Kafka cluster a KafkaTopic belongs to;
	// the Topic Operator only handles topics labelled with its own cluster.
	StrimziClusterLabel = "strimzi.io/cluster"
	// TopicOperatorFinalizer is the Topic Operator's finalizer on KafkaTopics.
	TopicOperatorFinalizer = "strimzi.io/topic-operator"
)

// KafkaTopicVersions are the KafkaTopic versions the product speaks, newest
// first: v1 since Strimzi 0.49 (the only one from Strimzi 1.0), v1beta2 before.
var KafkaTopicVersions = []string{"v1", "v1beta2"}

// KafkaTopic is the GroupVersionKind of a KafkaTopic at the given version.
func KafkaTopic(version string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: StrimziGroup, Version: version, Kind: "KafkaTopic"}
}

// CalicoGroupVersion is projectcalico.org/v3.
var CalicoGroupVersion = calicov3.SchemeGroupVersion

// Scheme holds the built-in Kubernetes types and Calico's projectcalico.org/v3.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail at run time
	}
	if err := calicov3.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
