# A site is imported by the namespace and name of its KafkaTopic.
terraform import telemetry_site.ams01 kafka/sfacctd-flows-ams01

# A KafkaTopic made without telemetry_site imports too. It needs Strimzi's
# strimzi.io/cluster label (without it no Topic Operator manages the topic).
# The site name is the telemetry-platform.io/site label when present, else
# the topic name without the default prefix sfacctd-flows- (or the whole
# name, when it is a DNS label). The plan after the import shows in place
# the labels and annotations apply adds.
kubectl label kafkatopic -n kafka flows-ams01 strimzi.io/cluster=telemetry telemetry-platform.io/site=ams01
terraform import telemetry_site.ams01 kafka/flows-ams01
