{{/*
Naming and label helpers. Selector labels (name + instance + component) are immutable once a
release is installed: never add anything to them.
*/}}

{{- define "nodewatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just <release> when it already contains the chart name; 63 chars max. */}}
{{- define "nodewatch.fullname" -}}
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

{{- define "nodewatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels of every object. */}}
{{- define "nodewatch.labels" -}}
helm.sh/chart: {{ include "nodewatch.chart" . }}
app.kubernetes.io/name: {{ include "nodewatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nodewatch
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the aggregator pods. */}}
{{- define "nodewatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodewatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: aggregator
{{- end }}

{{/* Selector labels of the agent pods. */}}
{{- define "nodewatch.agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodewatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{/* Labels of aggregator objects: common + component. */}}
{{- define "nodewatch.aggregator.labels" -}}
{{ include "nodewatch.labels" . }}
app.kubernetes.io/component: aggregator
{{- end }}

{{- define "nodewatch.agent.labels" -}}
{{ include "nodewatch.labels" . }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "nodewatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nodewatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest]; the tag defaults to the chart's appVersion. Call with (dict "image" .Values.image "root" .) */}}
{{- define "nodewatch.imageRef" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* Service names. */}}
{{- define "nodewatch.headlessServiceName" -}}
{{- printf "%s-headless" (include "nodewatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "nodewatch.ingestServiceName" -}}
{{- printf "%s-ingest" (include "nodewatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "nodewatch.queryServiceName" -}}
{{- printf "%s-query" (include "nodewatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "nodewatch.metricsServiceName" -}}
{{- printf "%s-metrics" (include "nodewatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret with the aggregator's server certificate (ca.crt, tls.crt, tls.key). */}}
{{- define "nodewatch.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "nodewatch.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/*
Per-replica DNS names through the headless Service: <fullname>-<i>.<headless>.<ns>.svc[.<domain>].
Returns a comma-free list, one name per line. Call with the root context.
*/}}
{{- define "nodewatch.replicaHostnames" -}}
{{- $full := include "nodewatch.fullname" . }}
{{- $headless := include "nodewatch.headlessServiceName" . }}
{{- range $i := until (int .Values.replicas) }}
{{ printf "%s-%d.%s.%s.svc" $full $i $headless $.Release.Namespace }}
{{- end }}
{{- end }}

{{/* PromQL matcher selecting this release's aggregator series (labels added by the ServiceMonitor). */}}
{{- define "nodewatch.promSelector" -}}
namespace="{{ .Release.Namespace }}",service="{{ include "nodewatch.metricsServiceName" . }}"
{{- end }}

{{/*
Render-time guards: combinations that would deploy but misbehave.
*/}}
{{- define "nodewatch.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) (ne .Values.remediation.mode "off") }}
{{- fail "leaderElection.enabled=false with replicas > 1 would let every replica drain nodes; enable leader election, set replicas: 1 or remediation.mode: off" }}
{{- end }}
{{- if and .Values.tls.existingSecret .Values.tls.certManager.enabled }}
{{- fail "set either tls.existingSecret or tls.certManager.enabled, not both (cert-manager writes <fullname>-tls)" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name is required when tls.certManager.enabled" }}
{{- end }}
{{- if and .Values.agent.enabled (eq .Values.agent.tls.client.source "secret") (not .Values.agent.tls.client.existingSecret) }}
{{- fail "agent.tls.client.existingSecret is required when agent.tls.client.source is secret" }}
{{- end }}
{{- end }}
