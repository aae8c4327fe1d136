# The same pipeline in two clusters (one per region), through the
# telemetry-pop module and one provider alias per cluster: the PoPs are split
# between the regions, each cluster gets its own KafkaTopics, NLB ingress
# and Kafka sizing, and the outputs say which is which. This replaces the
# `cp -a` of GitOps folders per cluster. Each cluster says its platform: aws
# (an NLB; set its node security group, and leave aws_endpoint null against
# real EKS), metal (MetalLB; set the address pool) or gcp (GKE). The same
# module folder applies to each.
terraform {
  required_providers {
    telemetry = {
      source = "telemetry-platform/telemetry"
    }
  }
}

variable "eu" {
  description = "The European cluster: its kubeconfig, platform (aws, metal or gcp), and on aws its region and node security group (aws_endpoint: an emulator, null for AWS), on metal its MetalLB address pool."
  type = object({
    kubeconfig             = string
    platform               = optional(string, "aws")
    region                 = optional(string, "eu-west-1")
    aws_endpoint           = optional(string)
    node_security_group_id = optional(string)
    address_pool           = optional(string)
  })
}

variable "us" {
  description = "The American cluster, as eu."
  type = object({
    kubeconfig             = string
    platform               = optional(string, "aws")
    region                 = optional(string, "us-east-1")
    aws_endpoint           = optional(string)
    node_security_group_id = optional(string)
    address_pool           = optional(string)
  })
}

provider "telemetry" {
  alias = "eu"
  kubernetes {
    config_path = var.eu.kubeconfig
  }
  aws {
    region = var.eu.region
    endpoints {
      ec2   = var.eu.aws_endpoint
      elbv2 = var.eu.aws_endpoint
      sts   = var.eu.aws_endpoint
    }
  }
}

provider "telemetry" {
  alias = "us"
  kubernetes {
    config_path = var.us.kubeconfig
  }
  aws {
    region = var.us.region
    endpoints {
      ec2   = var.us.aws_endpoint
      elbv2 = var.us.aws_endpoint
      sts   = var.us.aws_endpoint
    }
  }
}

locals {
  # Each PoP exports from four /27s of its own (198.18.0.0/15, the
  # benchmarking range: addresses that appear only in configuration), and
  # belongs to the region it is in.
  pops = {
    for i, p in [
      { name = "ams01", region = "eu" }, { name = "fra02", region = "eu" }, { name = "lhr03", region = "eu" },
      { name = "iad09", region = "us" }, { name = "ord10", region = "us" }, { name = "sjc11", region = "us" }, { name = "gru12", region = "us" },
    ] :
    p.name => {
      region = p.region
      site = {
        expected_flows_per_second = 2000 + 1500 * i
        flow_sources              = [for j in range(4) : cidrsubnet("198.18.0.0/15", 12, i * 16 + 2 * j)]
        retention                 = "24h"
      }
    }
  }
  collector = {
    namespace = "telemetry"
    selector  = { "app.kubernetes.io/name" = "sfacctd" }
  }
}

module "eu" {
  source    = "../modules/telemetry-pop"
  providers = { telemetry = telemetry.eu }

  kafka     = { cluster = "telemetry", namespace = "kafka" }
  platform  = var.eu.platform
  sites     = { for name, p in local.pops : name => p.site if p.region == "eu" }
  collector = merge(local.collector, { node_security_group_id = var.eu.node_security_group_id, address_pool = var.eu.address_pool })
}

module "us" {
  source    = "../modules/telemetry-pop"
  providers = { telemetry = telemetry.us }

  kafka     = { cluster = "telemetry", namespace = "kafka" }
  platform  = var.us.platform
  sites     = { for name, p in local.pops : name => p.site if p.region == "us" }
  collector = merge(local.collector, { node_security_group_id = var.us.node_security_group_id, address_pool = var.us.address_pool })
}

output "clusters" {
  description = "Per cluster: its sites' topics, where its exporters send, its security-group rules and its Kafka sizing."
  value = {
    eu = {
      topics               = module.eu.topics
      platform             = var.eu.platform
      nlb_dns_name         = module.eu.nlb_dns_name
      addresses            = module.eu.addresses
      policy_enforced      = module.eu.policy_enforced
      security_group_rules = module.eu.security_group_rules
      kafka_sizing         = module.eu.kafka_sizing
    }
    us = {
      topics               = module.us.topics
      platform             = var.us.platform
      nlb_dns_name         = module.us.nlb_dns_name
      addresses            = module.us.addresses
      policy_enforced      = module.us.policy_enforced
      security_group_rules = module.us.security_group_rules
      kafka_sizing         = module.us.kafka_sizing
    }
  }
}
