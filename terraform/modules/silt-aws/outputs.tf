output "bucket_name" {
  description = "The bucket holding Silt's data."
  value       = aws_s3_bucket.data.bucket
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.data.arn
}

output "bucket_url" {
  description = "The object-store URL the brokers use; `silt read <bucket_url> --topic T` reads a topic straight from it."
  value       = "s3://${aws_s3_bucket.data.bucket}/${var.name}"
}

output "role_arn" {
  description = "IAM role the brokers' ServiceAccount assumes (IRSA)."
  value       = aws_iam_role.silt.arn
}

output "service_account" {
  description = "Namespace and name of the ServiceAccount bound to the role."
  value       = "${var.namespace}/${local.service_account}"
}

output "bootstrap_servers" {
  description = "Bootstrap address for Kafka clients inside the cluster."
  value       = "${local.service_account}.${var.namespace}.svc.cluster.local:9092"
}

output "security_protocol" {
  description = "The listener's security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)."
  value       = var.tls_issuer != null ? (var.sasl_enabled ? "SASL_SSL" : "SSL") : (var.sasl_enabled ? "SASL_PLAINTEXT" : "PLAINTEXT")
}

output "admin_password_secret" {
  description = "Secret (namespace/name, key `password`) holding the SASL admin's password, when SASL is on."
  value       = var.sasl_enabled ? "${var.namespace}/${local.service_account}-admin" : null
}
