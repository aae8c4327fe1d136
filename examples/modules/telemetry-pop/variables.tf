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

variable "platform" {
  description = "Where the cluster runs, which decides the load balancer in front of the collectors: aws (the AWS Load Balancer Controller's NLB, telemetry_nlb_ingress), metal (MetalLB, telemetry_lb_ingress) or gcp (GKE's passthrough NLB, telemetry_lb_ingress; rendered and validated only). The same folder applies to each."
  type        = string
  default     = "aws"
  validation {
    condition     = contains(["aws", "metal", "gcp"], var.platform)
    error_message = "platform must be aws, metal or gcp."
  }
}

variable "collector" {
  description = "Where the collectors run and how exporters reach them; node_security_group_id: the nodes' security group (aws only, required there); address_pool: the MetalLB IPAddressPool (metal only); service_name: the NLB Service's name (another than an existing Service's, to bring a new NLB up beside it); target_type: instance (the NLB sends to the nodes' NodePorts) or ip (to the pods; needed for IPv6 exporters); enforcement_timeout: how long an apply waits for the nlb-policy controller to acknowledge the sources (it fails past it, and admits no new source); policy_backend: calico or networkpolicy (a Kubernetes NetworkPolicy, for clusters without Calico; needs target_type ip or externalTrafficPolicy Local), null for the controller's default."
  type = object({
    namespace              = string
    service_name           = optional(string, "flows")
    selector               = map(string)
    node_security_group_id = optional(string)
    address_pool           = optional(string)
    scheme                 = optional(string, "internet-facing")
    target_type            = optional(string, "instance")
    enforcement_timeout    = optional(string, "2m")
    policy_backend         = optional(string)
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
  description = "Wait for the topics to be Ready, the NLB to exist and (platform metal or gke) the load balancer to give the collectors their addresses; false leaves `addresses` empty until a refresh reads them."
  type        = bool
  default     = true
}

variable "routing" {
  description = "The collectors' routing ConfigMap (telemetry_collector_routing), or null for none; kafka_bootstrap_servers: host:port of the Kafka bootstrap service; flush_interval: how often the collectors write to Kafka; mount_path: where the collectors mount the ConfigMap; ipfix_templates_file: a path on a volume that outlives the collector pod, where nfacctd keeps the IPFIX templates it learnt (a new pod decodes IPFIX at once)."
  type = object({
    kafka_bootstrap_servers = list(string)
    config_map_name         = optional(string, "flow-routing")
    flush_interval          = optional(string, "60s")
    mount_path              = optional(string, "/etc/pmacct")
    ipfix_templates_file    = optional(string)
  })
  default = null
}
