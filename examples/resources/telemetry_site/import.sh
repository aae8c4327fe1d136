# A site is imported by the namespace and name of its KafkaTopic.
terraform import telemetry_site.ams01 kafka/sfacctd-flows-ams01
