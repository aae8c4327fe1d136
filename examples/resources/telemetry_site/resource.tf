# One PoP exporting flows. Its KafkaTopic "sfacctd-flows-ams01" is created in
# the Kafka cluster's namespace with 3 partitions derived from the expected
# rate (12,000 flows/s at 500 B is 6 MB/s, at 2.5 MB/s per partition).
resource "telemetry_site" "ams01" {
  name = "ams01"
  kafka = {
    cluster   = "telemetry"
    namespace = "kafka"
  }
  expected_flows_per_second = 12000
  retention                 = "3d"
  flow_sources              = ["192.0.2.0/24", "198.51.100.0/25"]
  labels = {
    team = "netops"
  }
  wait_for_ready = true
  timeouts = {
    create = "5m"
  }
}
