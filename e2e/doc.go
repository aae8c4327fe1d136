// Package e2e holds the end-to-end tests of the pipeline the product serves:
// real exporters and collectors (pmacct), the ingress's path through real
// Felix and kube-proxy, and a Kafka-protocol broker, driven by the real
// terraform CLI; and the module on a bare-metal cluster (real MetalLB over
// BGP to a real router, kube-proxy and kube-router). It has no code of its
// own outside its tests.
package e2e
