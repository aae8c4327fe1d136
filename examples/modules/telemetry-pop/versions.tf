terraform {
  required_version = ">= 1.5"
  required_providers {
    telemetry = {
      source  = "telemetry-platform/telemetry"
      version = ">= 0.1.0, < 1.0.0"
    }
  }
}
