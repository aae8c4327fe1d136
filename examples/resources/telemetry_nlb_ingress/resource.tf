# The NLB entry point of the exporters: sFlow on UDP 6343 and IPFIX on TCP and
# UDP 4739. The security-group footprint is bounded by the listener protocols
# and coarse_cover_size, never by the number of sources: here 3 protocols x
# the 3 prefixes covering the sources + 2 node rules = 11; the exact
# per-source filtering is done in the cluster by the nlb-policy controller.
resource "telemetry_nlb_ingress" "flows" {
  name      = "flows"
  namespace = "telemetry"
  selector  = { "app.kubernetes.io/name" = "sfacctd" }
  ports = [
    { name = "sflow", protocol = "UDP", port = 6343 },
    { name = "ipfix", protocol = "TCP_UDP", port = 4739 },
  ]
  allowed_sources        = ["192.0.2.0/24", "198.51.100.0/25", "203.0.113.0/24"]
  scheme                 = "internet-facing"
  node_security_group_id = "sg-0123456789abcdef0"
  wait_for_load_balancer = true
}

output "rules" {
  value = {
    created          = telemetry_nlb_ingress.flows.security_group_rules
    per_source_model = telemetry_nlb_ingress.flows.security_group_rules_per_source_model
  }
}
