# The routing of three PoPs' flows, each to its site's topic, for the
# collectors (sfacctd, nfacctd) that mount the ConfigMap at /etc/pmacct.
resource "telemetry_site" "pop" {
  for_each = {
    ams01 = ["192.0.2.0/28", "2001:db8:a::/48"]
    fra01 = ["198.51.100.0/28"]
    sin01 = ["203.0.113.0/28"]
  }
  name         = each.key
  kafka        = { cluster = "telemetry", namespace = "kafka" }
  flow_sources = each.value
}

resource "telemetry_collector_routing" "flows" {
  name                    = "flow-routing"
  namespace               = "telemetry"
  kafka_bootstrap_servers = ["telemetry-kafka-bootstrap.kafka:9092"]
  sites = { for k, s in telemetry_site.pop : k => {
    topic        = s.topic_name
    flow_sources = s.flow_sources
  } }
  flush_interval = "10s"
  # On a volume that outlives the collector pod: a new pod decodes IPFIX at
  # once instead of waiting for each exporter to resend its templates.
  ipfix_templates_file = "/var/lib/pmacct/ipfix-templates.json"
}

# On the collectors' pod template, so a change of routing restarts them:
#   annotations = { "telemetry-platform.io/routing-checksum" = telemetry_collector_routing.flows.checksum }
output "routing_checksum" {
  value = telemetry_collector_routing.flows.checksum
}
