variable "name" {
  description = "Name of the Silt cluster: the Helm release, the IAM role's prefix and the default key prefix in the bucket."
  type        = string
  default     = "silt"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS label of at most 40 characters (lower case letters, digits and '-')."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket to create for Silt's data (WAL objects, segments, manifests). Globally unique."
  type        = string
}

variable "bucket_force_destroy" {
  description = "Allow `terraform destroy` to delete the bucket with its objects. Off by default: the bucket is the source of truth."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "KMS key for the bucket's default encryption (SSE-KMS). Null: SSE-S3 (AES-256)."
  type        = string
  default     = null
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which incomplete multipart uploads (segments of a broker that died mid-upload) are aborted and their parts deleted."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_multipart_days >= 1
    error_message = "abort_incomplete_multipart_days must be at least 1."
  }
}

variable "versioning" {
  description = "Keep overwritten and deleted objects for noncurrent_version_days (protection against mistakes; Silt itself never needs old versions)."
  type        = bool
  default     = true
}

variable "noncurrent_version_days" {
  description = "Days a noncurrent object version is kept before it expires."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "access_log_bucket" {
  description = "Bucket that receives S3 server access logs for the data bucket. Null: no access logging."
  type        = string
  default     = null
}

variable "eks_cluster_name" {
  description = "Name of the existing EKS cluster to install Silt into. Its IAM OIDC provider must exist (eksctl utils associate-iam-oidc-provider)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace for the release (created if missing)."
  type        = string
  default     = "silt"
}

variable "etcd_endpoints" {
  description = "host:port of each member of the etcd cluster that holds partition leadership, offsets, credentials and ACLs, e.g. [\"etcd-0.etcd.etcd.svc:2379\"]."
  type        = list(string)

  validation {
    condition     = length(var.etcd_endpoints) > 0 && alltrue([for e in var.etcd_endpoints : can(regex("^[^:/,]+:[0-9]{1,5}$", e))])
    error_message = "etcd_endpoints needs at least one endpoint, each host:port."
  }
}

variable "chart" {
  description = "The Silt chart: a path to helm/silt in this repository, or a chart name in chart_repository."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Helm repository URL holding the chart (null when chart is a local path)."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version (null: the newest, or the local chart)."
  type        = string
  default     = null
}

variable "image_repository" {
  description = "Silt image repository."
  type        = string
  default     = "ghcr.io/silt-io/silt"
}

variable "image_tag" {
  description = "Silt image tag (empty: the chart's appVersion)."
  type        = string
  default     = ""
}

variable "replicas" {
  description = "Number of brokers."
  type        = number
  default     = 3
}

variable "storage_class" {
  description = "Storage class for each broker's WAL and cache volume (a local-NVMe class, e.g. from the local static provisioner). Empty: the cluster's default."
  type        = string
  default     = ""
}

variable "volume_size" {
  description = "Size of each broker's WAL and cache volume."
  type        = string
  default     = "100Gi"
}

variable "tls_issuer" {
  description = "cert-manager issuer for the brokers' certificate. TLS is on when this is set (the default expects a ClusterIssuer named like this)."
  type = object({
    name = string
    kind = optional(string, "ClusterIssuer")
  })
  default = null
}

variable "sasl_enabled" {
  description = "SASL/SCRAM-SHA-512 authentication with an admin user whose password the chart generates into a Secret; the authorizer (ACLs) is on with it."
  type        = bool
  default     = true
}

variable "extra_values" {
  description = "More chart values (a YAML document), applied after the module's own."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for the AWS resources."
  type        = map(string)
  default     = {}
}
