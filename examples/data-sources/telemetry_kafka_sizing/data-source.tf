# Size the Kafka cluster from the sites.
data "telemetry_kafka_sizing" "this" {
  sites = [for s in [telemetry_site.ams01] : {
    name                      = s.name
    expected_flows_per_second = s.expected_flows_per_second
    retention                 = s.retention
    partitions                = s.partitions
  }]
  replication_factor = 3
}

output "kafka" {
  value = {
    brokers          = data.telemetry_kafka_sizing.this.brokers
    storage_per_node = "${ceil(data.telemetry_kafka_sizing.this.storage_per_broker_bytes / 1e9)} GB"
  }
}
