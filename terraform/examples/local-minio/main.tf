# Silt on a local Kubernetes cluster (kind, k3d, minikube) against MinIO: the chart from this
# repository with the bucket at MinIO's endpoint, static credentials from a Secret and the
# WAL on emptyDir. MinIO and etcd run in the cluster too (their Bitnami charts).
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.12, < 3.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.25"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5"
    }
  }
}

variable "kubeconfig" {
  description = "Path of the kubeconfig for the local cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context (kind-kind, k3d-k3s-default, minikube)."
  type        = string
  default     = "kind-kind"
}

variable "namespace" {
  description = "Namespace for MinIO, etcd and Silt."
  type        = string
  default     = "silt"
}

provider "kubernetes" {
  config_path    = var.kubeconfig
  config_context = var.kube_context
}

provider "helm" {
  kubernetes {
    config_path    = var.kubeconfig
    config_context = var.kube_context
  }
}

resource "kubernetes_namespace_v1" "silt" {
  metadata {
    name = var.namespace
  }
}

resource "random_password" "minio" {
  length  = 24
  special = false
}

# MinIO's root user is also Silt's S3 identity here; use a narrower user in anything shared.
resource "kubernetes_secret_v1" "minio" {
  metadata {
    name      = "silt-minio"
    namespace = kubernetes_namespace_v1.silt.metadata[0].name
  }

  data = {
    "root-user"             = "silt"
    "root-password"         = random_password.minio.result
    "AWS_ACCESS_KEY_ID"     = "silt"
    "AWS_SECRET_ACCESS_KEY" = random_password.minio.result
  }
}

resource "helm_release" "minio" {
  name       = "minio"
  namespace  = kubernetes_namespace_v1.silt.metadata[0].name
  repository = "oci://registry-1.docker.io/bitnamicharts"
  chart      = "minio"

  values = [yamlencode({
    auth               = { existingSecret = kubernetes_secret_v1.minio.metadata[0].name }
    defaultBuckets     = "silt"
    persistence        = { size = "10Gi" }
    provisioning       = { enabled = false }
    disableWebUI       = false
    networkPolicy      = { enabled = false }
    podSecurityContext = { enabled = true }
  })]
}

resource "helm_release" "etcd" {
  name       = "etcd"
  namespace  = kubernetes_namespace_v1.silt.metadata[0].name
  repository = "oci://registry-1.docker.io/bitnamicharts"
  chart      = "etcd"

  values = [yamlencode({
    replicaCount = 1
    auth         = { rbac = { create = false } }
  })]
}

resource "helm_release" "silt" {
  name      = "silt"
  namespace = kubernetes_namespace_v1.silt.metadata[0].name
  chart     = "${path.module}/../../../helm/silt"
  wait      = true
  timeout   = 600

  values = [yamlencode({
    replicaCount = 3
    image        = { repository = "silt", tag = "local", pullPolicy = "Never" }
    etcd         = { endpoints = ["etcd.${var.namespace}.svc.cluster.local:2379"] }
    objectStore = {
      bucket            = "silt"
      prefix            = "local"
      region            = "us-east-1"
      endpoint          = "http://minio.${var.namespace}.svc.cluster.local:9000"
      allowHttp         = true
      credentialsSecret = kubernetes_secret_v1.minio.metadata[0].name
    }
    persistence = { type = "emptyDir" }
    resources = {
      requests = { cpu = "100m", memory = "256Mi" }
      limits   = { memory = "1Gi" }
    }
    podDisruptionBudget = { enabled = false }
  })]

  depends_on = [helm_release.minio, helm_release.etcd]
}

output "bootstrap_servers" {
  description = "Bootstrap address for clients in the cluster."
  value       = "silt.${var.namespace}.svc.cluster.local:9092"
}
