# Silt on an existing EKS cluster: a bucket, an IRSA role and the chart, with TLS from
# cert-manager and SCRAM-SHA-512 + ACLs on the Kafka listener.
#   terraform init && terraform apply -var cluster=my-eks -var bucket=my-silt-data \
#     -var 'etcd_endpoints=["etcd-0.etcd.etcd.svc:2379","etcd-1.etcd.etcd.svc:2379","etcd-2.etcd.etcd.svc:2379"]'

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.12, < 3.0"
    }
  }
}

variable "region" {
  description = "AWS region of the EKS cluster and the bucket."
  type        = string
  default     = "us-east-1"
}

variable "cluster" {
  description = "Name of the existing EKS cluster."
  type        = string
}

variable "bucket" {
  description = "Name of the bucket to create (globally unique)."
  type        = string
}

variable "etcd_endpoints" {
  description = "host:port of each etcd member reachable from the cluster."
  type        = list(string)
}

provider "aws" {
  region = var.region
}

data "aws_eks_cluster" "this" {
  name = var.cluster
}

data "aws_eks_cluster_auth" "this" {
  name = var.cluster
}

provider "helm" {
  kubernetes {
    host                   = data.aws_eks_cluster.this.endpoint
    cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)
    token                  = data.aws_eks_cluster_auth.this.token
  }
}

module "silt" {
  source = "../../modules/silt-aws"

  name             = "silt"
  bucket_name      = var.bucket
  eks_cluster_name = var.cluster
  namespace        = "silt"
  etcd_endpoints   = var.etcd_endpoints
  replicas         = 3
  storage_class    = "local-nvme"
  volume_size      = "200Gi"
  tls_issuer       = { name = "letsencrypt-or-internal-ca" }
  sasl_enabled     = true

  extra_values = yamlencode({
    serviceMonitor      = { enabled = true }
    podDisruptionBudget = { enabled = true, maxUnavailable = 1 }
    resources = {
      requests = { cpu = "2", memory = "8Gi" }
      limits   = { memory = "8Gi" }
    }
    nodeSelector = { "node.kubernetes.io/instance-type" = "i4i.xlarge" }
  })

  tags = {
    app = "silt"
  }
}

output "bootstrap_servers" {
  description = "Bootstrap address for clients in the cluster."
  value       = module.silt.bootstrap_servers
}

output "security_protocol" {
  description = "Security protocol clients use."
  value       = module.silt.security_protocol
}

output "admin_password_secret" {
  description = "Secret with the SASL admin's password."
  value       = module.silt.admin_password_secret
}

output "bucket_url" {
  description = "Where the data lives; silt read reads it without brokers."
  value       = module.silt.bucket_url
}
