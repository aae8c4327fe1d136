# A platform team's module: N sites (one KafkaTopic each), one NLB ingress
# admitting the union of their exporters, and the Kafka sizing they imply.
resource "telemetry_site" "this" {
  for_each = var.sites

  name                      = each.key
  kafka                     = var.kafka
  expected_flows_per_second = each.value.expected_flows_per_second
  flow_sources              = each.value.flow_sources
  retention                 = each.value.retention
  wait_for_ready            = var.wait
}

resource "telemetry_nlb_ingress" "flows" {
  name                   = var.collector.service_name
  namespace              = var.collector.namespace
  selector               = var.collector.selector
  ports                  = var.collector.ports
  allowed_sources        = setunion([for s in var.sites : s.flow_sources]...)
  scheme                 = var.collector.scheme
  node_security_group_id = var.collector.node_security_group_id
  wait_for_load_balancer = var.wait
  enforcement_timeout    = var.collector.enforcement_timeout
}

data "telemetry_kafka_sizing" "this" {
  sites = [for s in telemetry_site.this : {
    name                      = s.name
    expected_flows_per_second = s.expected_flows_per_second
    retention                 = s.retention
    partitions                = s.partitions
  }]
}
