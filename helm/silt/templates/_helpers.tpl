{{/* Names and labels. */}}
{{- define "silt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "silt.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "silt.headless" -}}
{{- printf "%s-headless" (include "silt.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "silt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "silt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "silt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "silt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "silt.readerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "silt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: reader
{{- end }}

{{- define "silt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "silt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "silt.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Kafka listener's security protocol. */}}
{{- define "silt.protocol" -}}
{{- if and .Values.tls.enabled .Values.sasl.enabled }}SASL_SSL
{{- else if .Values.tls.enabled }}SSL
{{- else if .Values.sasl.enabled }}SASL_PLAINTEXT
{{- else }}PLAINTEXT
{{- end }}
{{- end }}

{{- define "silt.tlsSecret" -}}
{{- if .Values.tls.existingSecret }}{{ .Values.tls.existingSecret }}
{{- else }}{{ include "silt.fullname" . }}-tls
{{- end }}
{{- end }}

{{- define "silt.adminSecret" -}}
{{- if .Values.sasl.admin.existingSecret }}{{ .Values.sasl.admin.existingSecret }}
{{- else }}{{ include "silt.fullname" . }}-admin
{{- end }}
{{- end }}

{{- define "silt.bootstrap" -}}
{{- printf "%s.%s.svc.%s:%d" (include "silt.fullname" .) .Release.Namespace .Values.kafka.clusterDomain (int .Values.kafka.port) }}
{{- end }}

{{- define "silt.bucketUrl" -}}
{{- printf "s3://%s/%s" .Values.objectStore.bucket (default .Release.Name .Values.objectStore.prefix) }}
{{- end }}

{{/* AWS_* settings shared by brokers and readers. */}}
{{- define "silt.awsEnv" -}}
- name: AWS_REGION
  value: {{ .Values.objectStore.region | quote }}
{{- with .Values.objectStore.endpoint }}
- name: AWS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if .Values.objectStore.allowHttp }}
- name: AWS_ALLOW_HTTP
  value: "true"
{{- end }}
{{- with .Values.objectStore.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end }}
