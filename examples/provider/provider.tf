# The kubernetes and aws blocks take the settings of the kubernetes and aws
# providers. Neither API is called while validating or planning new
# resources, so values known only after apply (an EKS cluster created in the
# same configuration) work.
provider "telemetry" {
  kubernetes {
    host                   = data.aws_eks_cluster.this.endpoint
    cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)
    exec {
      api_version = "client.authentication.k8s.io/v1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", data.aws_eks_cluster.this.name]
    }
  }
  aws {
    region = "us-east-1"
  }
}
