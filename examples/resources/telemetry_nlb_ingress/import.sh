# An ingress is imported by the namespace and name of its Service.
terraform import telemetry_nlb_ingress.flows telemetry/flows

# A LoadBalancer Service made without the provider imports too, with no
# label or annotation needed: node_security_group_id is null after the
# import, and the plan shows in place what apply adds (the node group and
# its rules, the annotations for the AWS Load Balancer Controller and the
# nlb-policy controller). One whose sources the AWS Load Balancer Controller
# admits with a rule each is migrated in place by the apply (Calico first,
# then the coarse cover, then the controller told to stop), keeping its NLB:
# see the guide "Migrating from the AWS Load Balancer Controller's
# per-source rules", and run the telemetry_lbc_services data source first.
# nlb_security_group is read from the NLB after the import; a configuration
# that would replace the NLB is refused at plan time.
