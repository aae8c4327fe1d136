# A Service written elsewhere: <namespace>/<name>. The kind is read from its
# annotations (MetalLB's or GKE's; anything else is generic).
terraform import telemetry_lb_ingress.flows telemetry/flows
