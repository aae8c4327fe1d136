# Before migrating: the NLB Services the AWS Load Balancer Controller admits
# sources to one security-group rule at a time, and how each can move to
# telemetry_nlb_ingress.
variable "node_security_group" {
  type = string
}

data "telemetry_lbc_services" "check" {
  node_security_group_id = var.node_security_group
}

output "lbc_services" {
  value = {
    for s in data.telemetry_lbc_services.check.services : s.id => {
      per_source_rules   = s.per_source_rules
      fullest_group      = "${s.fullest_group_rules} rules in ${s.fullest_group}"
      in_place           = s.migratable_in_place
      nlb_security_group = s.nlb_security_group
      reason             = s.reason
    }
  }
}
