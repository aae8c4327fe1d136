terraform {
  required_version = ">= 1.5"
  required_providers {
    telemetry = {
      source = "telemetry-platform/telemetry"
    }
  }
}
