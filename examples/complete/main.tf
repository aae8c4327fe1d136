# A complete telemetry pipeline: 12 PoPs, their KafkaTopics, one NLB ingress
# and the Kafka sizing, through the telemetry-pop module. `make demo` applies
# this against the local control plane; against a real EKS cluster set
# kubeconfig and leave aws_endpoint null.
terraform {
  required_providers {
    telemetry = {
      source  = "telemetry-platform/telemetry"
      version = "~> 0.1.0"
    }
  }
}

variable "kubeconfig" {
  type = string
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "aws_endpoint" {
  description = "A custom AWS endpoint (an emulator); null for AWS itself."
  type        = string
  default     = null
}

variable "node_security_group_id" {
  type = string
}

variable "extra_sources" {
  description = "More exporter ranges of the first PoP (the demo adds one while the nlb-policy controller is stopped)."
  type        = list(string)
  default     = []
}

variable "kafka_bootstrap_servers" {
  description = "The Kafka cluster's bootstrap servers, for the collectors' routing."
  type        = list(string)
  default     = ["telemetry-kafka-bootstrap.kafka:9092"]
}

variable "collector_config_path" {
  description = "Where the collector pods mount the routing ConfigMap."
  type        = string
  default     = "/etc/pmacct"
}

variable "collector_flush_interval" {
  description = "How often the collectors write to Kafka."
  type        = string
  default     = "60s"
}

variable "policy_backend" {
  description = "What enforces the sources in the cluster: calico or networkpolicy (a Kubernetes NetworkPolicy, for clusters without Calico); null: the nlb-policy controller's default."
  type        = string
  default     = null
}

variable "enforcement_timeout" {
  description = "How long an apply waits for the nlb-policy controller's acknowledgement (null: the module's 2m)."
  type        = string
  default     = null
}

provider "telemetry" {
  kubernetes {
    config_path = var.kubeconfig
  }
  aws {
    region = var.region
    endpoints {
      ec2   = var.aws_endpoint
      elbv2 = var.aws_endpoint
      sts   = var.aws_endpoint
    }
  }
}

locals {
  # Each PoP exports from eight /27s of its own (in the 198.18.0.0/15
  # benchmarking range here: addresses that appear only in configuration).
  pops = {
    for i, name in ["ams01", "fra02", "lhr03", "cdg04", "mad05", "mxp06", "waw07", "arn08", "iad09", "ord10", "sjc11", "nrt12"] :
    name => {
      expected_flows_per_second = 2000 + 1500 * i
      flow_sources              = concat([for j in range(8) : cidrsubnet("198.18.0.0/15", 12, i * 16 + 2 * j)], i == 0 ? var.extra_sources : [])
      retention                 = i < 4 ? "3d" : "24h"
    }
  }
}

module "telemetry" {
  source = "../modules/telemetry-pop"

  kafka = {
    cluster   = "telemetry"
    namespace = "kafka"
  }
  sites = local.pops
  collector = {
    namespace              = "telemetry"
    selector               = { "app.kubernetes.io/name" = "sfacctd" }
    node_security_group_id = var.node_security_group_id
    enforcement_timeout    = var.enforcement_timeout
    policy_backend         = var.policy_backend
  }
  # The collectors' routing: each PoP's flows to its topic.
  routing = {
    kafka_bootstrap_servers = var.kafka_bootstrap_servers
    mount_path              = var.collector_config_path
    flush_interval          = var.collector_flush_interval
  }
}

output "topics" {
  value = module.telemetry.topics
}

output "security_group_rules" {
  value = module.telemetry.security_group_rules
}

output "kafka_sizing" {
  value = module.telemetry.kafka_sizing
}

output "nlb_dns_name" {
  value = module.telemetry.nlb_dns_name
}

output "collector_routing" {
  value = module.telemetry.collector_routing
}
