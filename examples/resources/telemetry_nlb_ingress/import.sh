# An ingress is imported by the namespace and name of its Service.
terraform import telemetry_nlb_ingress.flows telemetry/flows

# A LoadBalancer Service made without the provider imports too, with no
# label or annotation needed: node_security_group_id is null after the
# import, and the plan shows in place what apply adds (the node group and
# its rules, the annotations for the AWS Load Balancer Controller and the
# nlb-policy controller). Keep nlb_security_group as the NLB has it (an NLB
# made with aws-load-balancer-disable-nlb-sg needs nlb_security_group =
# false): changing it replaces the NLB.
