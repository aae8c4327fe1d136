# A pre-flight check: fail the plan early when the cluster lacks what the
# telemetry pipeline needs.
variable "vpc_id" {
  type = string
}

data "telemetry_environment" "this" {
  vpc_id = var.vpc_id
}

resource "terraform_data" "preflight" {
  lifecycle {
    precondition {
      condition     = data.telemetry_environment.this.kafka_topic_api_version != ""
      error_message = "Strimzi's KafkaTopic CRD is not installed in the cluster."
    }
    precondition {
      condition     = data.telemetry_environment.this.calico_api_served
      error_message = "Calico's projectcalico.org/v3 API is not served; the nlb-policy controller needs it."
    }
  }
}
