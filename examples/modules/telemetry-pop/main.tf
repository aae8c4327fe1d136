# A platform team's module: N sites (one KafkaTopic each), one ingress
# admitting the union of their exporters (an NLB on AWS, MetalLB on bare
# metal, GKE's passthrough NLB on GCP), and the Kafka sizing they imply.
resource "telemetry_site" "this" {
  for_each = var.sites

  name                      = each.key
  kafka                     = var.kafka
  expected_flows_per_second = each.value.expected_flows_per_second
  flow_sources              = each.value.flow_sources
  retention                 = each.value.retention
  wait_for_ready            = var.wait
}

locals {
  sources = setunion([for s in var.sites : s.flow_sources]...)
}

# On aws. A state from before the platform variable, where it was not
# counted, moves to index 0 by itself (terraform and OpenTofu move a resource
# that gains count so): the NLB is kept (TestAccExampleComplete).
resource "telemetry_nlb_ingress" "flows" {
  count = var.platform == "aws" ? 1 : 0

  name                   = var.collector.service_name
  namespace              = var.collector.namespace
  selector               = var.collector.selector
  ports                  = var.collector.ports
  allowed_sources        = local.sources
  scheme                 = var.collector.scheme
  target_type            = var.collector.target_type
  node_security_group_id = var.collector.node_security_group_id
  wait_for_load_balancer = var.wait
  enforcement_timeout    = var.collector.enforcement_timeout
  policy_backend         = var.collector.policy_backend

  lifecycle {
    precondition {
      condition     = var.collector.node_security_group_id != null
      error_message = "collector.node_security_group_id is required with platform aws: the nodes' security group, which the NLB's rules go to."
    }
  }
}

resource "telemetry_lb_ingress" "flows" {
  count = var.platform == "aws" ? 0 : 1

  name                = var.collector.service_name
  namespace           = var.collector.namespace
  kind                = var.platform == "metal" ? "metallb" : "gke"
  selector            = var.collector.selector
  ports               = var.collector.ports
  allowed_sources     = local.sources
  address_pool        = var.platform == "metal" ? var.collector.address_pool : null
  enforcement_timeout = var.collector.enforcement_timeout
  wait_for_addresses  = var.wait
}

data "telemetry_kafka_sizing" "this" {
  sites = [for s in telemetry_site.this : {
    name                      = s.name
    expected_flows_per_second = s.expected_flows_per_second
    retention                 = s.retention
    partitions                = s.partitions
  }]
}

# The collectors' routing (when var.routing is set): a ConfigMap from which
# sfacctd and nfacctd send each site's flows to its topic and an unlisted
# exporter's nowhere. Its checksum goes on the collectors' pod template.
resource "telemetry_collector_routing" "this" {
  count = var.routing == null ? 0 : 1

  name                    = var.routing.config_map_name
  namespace               = var.collector.namespace
  kafka_bootstrap_servers = var.routing.kafka_bootstrap_servers
  sites = { for k, s in telemetry_site.this : k => {
    topic        = s.topic_name
    flow_sources = s.flow_sources
  } }
  sflow_port     = one([for p in var.collector.ports : p.port if p.name == "sflow"])
  ipfix_port     = one([for p in var.collector.ports : p.port if p.name == "ipfix"])
  flush_interval = var.routing.flush_interval
  mount_path     = var.routing.mount_path

  ipfix_templates_file = var.routing.ipfix_templates_file
}
