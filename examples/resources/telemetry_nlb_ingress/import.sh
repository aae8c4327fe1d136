# An ingress is imported by the namespace and name of its Service.
terraform import telemetry_nlb_ingress.flows telemetry/flows
