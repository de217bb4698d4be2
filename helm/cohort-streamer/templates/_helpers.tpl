{{/* Chart name, or nameOverride; cut to 63 characters (the DNS label limit). */}}
{{- define "cohort-streamer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Resource name prefix: fullnameOverride, else "<release>-<chart>" (just the release name when it
already contains the chart name); cut to 63 characters.
*/}}
{{- define "cohort-streamer.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "cohort-streamer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only, so they never change across upgrades. */}}
{{- define "cohort-streamer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cohort-streamer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object the chart renders. */}}
{{- define "cohort-streamer.labels" -}}
helm.sh/chart: {{ include "cohort-streamer.chart" . }}
{{ include "cohort-streamer.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels of helper pods (replay Job, helm test): no app.kubernetes.io/name, so the Service and
the PodDisruptionBudget, which select on name + instance, never pick them up.
*/}}
{{- define "cohort-streamer.helperPodLabels" -}}
helm.sh/chart: {{ include "cohort-streamer.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cohort-streamer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cohort-streamer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: repository:tag, pinned as repository:tag@digest when image.digest is set. */}}
{{- define "cohort-streamer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* Name of the Secret holding the credentials: existingSecret, else the chart's own. */}}
{{- define "cohort-streamer.secretName" -}}
{{- default (include "cohort-streamer.fullname" .) .Values.credentials.existingSecret }}
{{- end }}

{{/*
streamer.yaml: values.config, plus what the chart owns (server.* from port, the workspace's rate
budget) and only one of moengage.base_url / moengage.data_center. Every pod gets the whole
budget: the members of the consumer group divide it among themselves, so the replica count is
not part of the config and scaling never rolls the pods.
*/}}
{{- define "cohort-streamer.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $moengage := get $config "moengage" | default dict }}
{{- if $moengage.base_url }}
{{- $_ := unset $moengage "data_center" }}
{{- else }}
{{- $_ := unset $moengage "base_url" }}
{{- end }}
{{- $_ := set $moengage "rate_limit_per_minute" (int .Values.rateBudget.requestsPerMinute) }}
{{- $_ := set $config "moengage" $moengage }}
{{- $_ := set $config "server" (dict "host" "0.0.0.0" "port" (int .Values.port)) }}
{{- toYaml $config }}
{{- end }}

{{/* The pod's credentials: the Secret mounted as files, read through the *_FILE variables. */}}
{{- define "cohort-streamer.credentialsDir" -}}
/var/run/secrets/cohort-streamer
{{- end }}

{{/*
Fails unless terminationGracePeriodSeconds leaves the shutdown flush deadline plus 5 s for the
final commit and leaving the group.
*/}}
{{- define "cohort-streamer.checkGracePeriod" -}}
{{- $flush := float64 ((.Values.config.deadlines | default dict).shutdown_flush_seconds | default 20) }}
{{- $grace := float64 .Values.terminationGracePeriodSeconds }}
{{- if lt $grace (addf $flush 5) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least config.deadlines.shutdown_flush_seconds (%v) + 5: the pod flushes, commits and leaves the group after SIGTERM" $grace $flush) }}
{{- end }}
{{- end }}
