# The two-NLB path off the AWS Load Balancer Controller's per-source rules,
# for an NLB the product cannot adopt in place (telemetry_lbc_services says
# why: one made without security groups when you want them, or a node group
# with no room for the coarse cover beside the controller's rules). A new
# NLB comes up beside the old one through the telemetry-pop module, the
# exporters move to its DNS name, then the old Service goes
# (docs/guides/migrating-from-lbc-rules.md, "The two-NLB path").
#
# 1. terraform apply: the new NLB, Calico policies acknowledged before any
#    rule admits a source; the old NLB keeps carrying every flow.
# 2. Point the exporters (or the DNS name they use) at the output
#    move_exporters_to, and watch the new collectors receive them.
# 3. kubectl -n <namespace> delete service <old>: the controller deletes the
#    old NLB and its per-source rules (telemetry_lbc_services then lists only
#    the new Service, migrated).
terraform {
  required_providers {
    telemetry = {
      source = "telemetry-platform/telemetry"
    }
  }
}

variable "kubeconfig" {
  description = "The cluster's kubeconfig."
  type        = string
}

variable "aws" {
  description = "The cluster's AWS region and nodes' security group (endpoint: an emulator, null for AWS)."
  type = object({
    region                 = string
    endpoint               = optional(string)
    node_security_group_id = string
  })
}

variable "old_service" {
  description = "The Service whose NLB the controller admits sources to one rule at a time, as <namespace>/<name>."
  type        = string
  default     = "telemetry/flows"
}

variable "sites" {
  description = "The PoPs, as the telemetry-pop module takes them: the union of their flow_sources is what the new NLB admits."
  type = map(object({
    expected_flows_per_second = number
    flow_sources              = set(string)
  }))
}

provider "telemetry" {
  kubernetes {
    config_path = var.kubeconfig
  }
  aws {
    region = var.aws.region
    endpoints {
      ec2   = var.aws.endpoint
      elbv2 = var.aws.endpoint
      sts   = var.aws.endpoint
    }
  }
}

locals {
  namespace = split("/", var.old_service)[0]
}

data "telemetry_lbc_services" "before" {
  namespace              = local.namespace
  node_security_group_id = var.aws.node_security_group_id
}

locals {
  old = one([for s in data.telemetry_lbc_services.before.services : s if s.id == var.old_service])
}

module "next" {
  source = "../modules/telemetry-pop"

  kafka = { cluster = "telemetry", namespace = "kafka" }
  sites = var.sites
  collector = {
    namespace              = local.namespace
    service_name           = "${split("/", var.old_service)[1]}-next"
    selector               = { "app.kubernetes.io/name" = "sfacctd" }
    node_security_group_id = var.aws.node_security_group_id
  }
}

output "move_exporters_to" {
  description = "The new NLB's DNS name: point the exporters here, then delete the old Service."
  value       = module.next.nlb_dns_name
}

output "old" {
  description = "The NLB being replaced: where exporters send today, the per-source rules it holds, and why it is not adopted in place."
  value = local.old == null ? null : {
    dns_name         = local.old.dns_name
    per_source_rules = local.old.per_source_rules
    reason           = local.old.reason
  }
}
