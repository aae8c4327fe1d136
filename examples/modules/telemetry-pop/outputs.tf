output "topics" {
  description = "Kafka topic of each site."
  value       = { for k, s in telemetry_site.this : k => s.topic_name }
}

output "nlb_dns_name" {
  description = "Where exporters send their flows on aws (the NLB's DNS name); null elsewhere."
  value       = one(telemetry_nlb_ingress.flows[*].dns_name)
}

output "addresses" {
  description = "Where exporters send their flows on metal and gcp (the load balancer's addresses); null on aws."
  value       = one(telemetry_lb_ingress.flows[*].load_balancer_addresses)
}

output "policy_enforced" {
  description = "Whether the nlb-policy controller acknowledges the ingress's current sources and ports."
  value       = one(concat(telemetry_nlb_ingress.flows[*].policy_enforced, telemetry_lb_ingress.flows[*].policy_enforced))
}

output "security_group_rules" {
  description = "On aws: the rules the ingress created, the coarse cover they admit, and what the per-source model would have needed; null elsewhere (no cloud rules)."
  value = var.platform != "aws" ? null : {
    created                      = length(telemetry_nlb_ingress.flows[0].security_group_rules)
    per_source_model             = telemetry_nlb_ingress.flows[0].security_group_rules_per_source_model
    coarse_cover                 = telemetry_nlb_ingress.flows[0].coarse_cover
    coarse_cover_extra_addresses = telemetry_nlb_ingress.flows[0].coarse_cover_extra_addresses
    policy_enforced              = telemetry_nlb_ingress.flows[0].policy_enforced
  }
}

output "kafka_sizing" {
  description = "Brokers, partitions and storage the sites need."
  value = {
    brokers                  = data.telemetry_kafka_sizing.this.brokers
    total_partitions         = data.telemetry_kafka_sizing.this.total_partitions
    storage_per_broker_bytes = data.telemetry_kafka_sizing.this.storage_per_broker_bytes
    network_in_bytes_per_sec = data.telemetry_kafka_sizing.this.network_in_bytes_per_second
  }
}

output "collector_routing" {
  description = "The routing ConfigMap and its checksum (an annotation on the collectors' pod template, so they restart on a change), or null."
  value = var.routing == null ? null : {
    config_map = telemetry_collector_routing.this[0].id
    checksum   = telemetry_collector_routing.this[0].checksum
    tags       = telemetry_collector_routing.this[0].tags
  }
}
