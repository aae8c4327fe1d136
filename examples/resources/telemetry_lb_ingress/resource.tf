# A bare-metal PoP's collectors behind MetalLB: an address of each family
# from the pool "exporters", the sources filtered at the collector pods by
# the nlb-policy controller's NetworkPolicy.
resource "telemetry_lb_ingress" "flows" {
  name      = "flows"
  namespace = "telemetry"
  kind      = "metallb"
  selector  = { app = "sfacctd" }
  ports = [
    { name = "sflow", protocol = "UDP", port = 6343 },
    { name = "ipfix", protocol = "UDP", port = 4739 },
  ]
  allowed_sources = ["192.0.2.0/24", "2001:db8:2::/64"]
  address_pool    = "exporters"
}

output "exporters_send_to" {
  value = telemetry_lb_ingress.flows.load_balancer_addresses
}
