variable "kafka" {
  description = "The Strimzi Kafka cluster the sites' topics belong to."
  type = object({
    cluster   = string
    namespace = string
  })
}

variable "sites" {
  description = "The PoPs exporting flows, by name (a lowercase DNS label)."
  type = map(object({
    expected_flows_per_second = number
    flow_sources              = set(string)
    retention                 = optional(string, "24h")
  }))
}

variable "collector" {
  description = "Where the collectors run and how exporters reach them; service_name: the NLB Service's name (another than an existing Service's, to bring a new NLB up beside it); enforcement_timeout: how long an apply waits for the nlb-policy controller to acknowledge the sources (it fails past it, and admits no new source)."
  type = object({
    namespace              = string
    service_name           = optional(string, "flows")
    selector               = map(string)
    node_security_group_id = string
    scheme                 = optional(string, "internet-facing")
    enforcement_timeout    = optional(string, "2m")
    ports = optional(list(object({
      name     = string
      protocol = string
      port     = number
      })), [
      { name = "sflow", protocol = "UDP", port = 6343 },
      { name = "ipfix", protocol = "TCP_UDP", port = 4739 },
    ])
  })
}

variable "wait" {
  description = "Wait for the topics to be Ready and the NLB to exist."
  type        = bool
  default     = true
}
