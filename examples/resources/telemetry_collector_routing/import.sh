# The routing is imported by the namespace and name of its ConfigMap, which
# must be in the format this resource writes (the plan after the import is
# empty when the configuration says the same).
terraform import telemetry_collector_routing.flows telemetry/flow-routing
