locals {
  # The chart's full name: the StatefulSet, the Services and the ServiceAccount are all called this.
  service_account = var.name
  chart           = coalesce(var.chart, "${path.module}/../../../helm/silt")
  oidc_issuer     = replace(data.aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

data "aws_partition" "current" {}

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

data "aws_iam_openid_connect_provider" "eks" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

# The bucket: the source of truth for Silt's data.
resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV2_AWS_62:Silt reads its own manifests; nothing consumes bucket event notifications.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a cost and recovery-objective decision for the caller; replicate with your own aws_s3_bucket_replication_configuration.
  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket; set access_log_bucket to turn it on.
  bucket        = var.bucket_name
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

# Versioning keeps what a mistaken delete or overwrite removed for noncurrent_version_days;
# Silt writes each object once, so it costs only the retention window.
resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id

  versioning_configuration {
    status = var.versioning ? "Enabled" : "Suspended"
  }
}

resource "aws_s3_bucket_logging" "data" {
  count = var.access_log_bucket == null ? 0 : 1

  bucket        = aws_s3_bucket.data.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3/${var.bucket_name}/"
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

# Silt deletes what retention and compaction drop itself; the bucket only cleans up after
# uploads that never completed.
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = var.versioning ? "Enabled" : "Disabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

# Only TLS connections reach the bucket.
data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.data.arn,
      "${aws_s3_bucket.data.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket = aws_s3_bucket.data.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# IRSA: the brokers' ServiceAccount (and the reader's, the same one) assumes this role.
data "aws_iam_policy_document" "assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [data.aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${local.service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "silt" {
  name_prefix          = "${var.name}-silt-"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

# What Silt does with the bucket and nothing more: objects under the bucket, listing it, and
# cleaning up multipart uploads.
data "aws_iam_policy_document" "bucket_access" {
  statement {
    sid       = "ListTheBucket"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.data.arn]
  }

  statement {
    sid    = "ReadAndWriteObjects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "UseTheBucketKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_policy" "bucket_access" {
  name_prefix = "${var.name}-silt-bucket-"
  description = "Silt ${var.name}: read and write objects in s3://${aws_s3_bucket.data.bucket}"
  policy      = data.aws_iam_policy_document.bucket_access.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "bucket_access" {
  role       = aws_iam_role.silt.name
  policy_arn = aws_iam_policy.bucket_access.arn
}

resource "helm_release" "silt" {
  name             = var.name
  namespace        = var.namespace
  create_namespace = true
  chart            = local.chart
  repository       = var.chart_repository
  version          = var.chart_version
  # The brokers are ready when each is registered in etcd; wait for it.
  wait    = true
  timeout = 600

  values = compact([
    yamlencode({
      fullnameOverride = local.service_account
      replicaCount     = var.replicas
      image = {
        repository = var.image_repository
        tag        = var.image_tag
      }
      serviceAccount = {
        create = true
        name   = local.service_account
        # EKS projects the web-identity token into the pods itself; the Kubernetes API token
        # stays unmounted.
        annotations = {
          "eks.amazonaws.com/role-arn" = aws_iam_role.silt.arn
        }
      }
      etcd = {
        endpoints = var.etcd_endpoints
        namespace = var.name
      }
      objectStore = {
        bucket = aws_s3_bucket.data.bucket
        prefix = var.name
        region = aws_s3_bucket.data.region
      }
      persistence = {
        type             = "persistentVolumeClaim"
        storageClassName = var.storage_class
        size             = var.volume_size
      }
      tls = {
        enabled = var.tls_issuer != null
        certManager = {
          enabled   = var.tls_issuer != null
          issuerRef = var.tls_issuer == null ? { name = "", kind = "ClusterIssuer" } : var.tls_issuer
        }
      }
      sasl = {
        enabled = var.sasl_enabled
      }
      authorizer = {
        enabled = var.sasl_enabled
      }
    }),
    var.extra_values,
  ])

  depends_on = [aws_iam_role_policy_attachment.bucket_access]
}
