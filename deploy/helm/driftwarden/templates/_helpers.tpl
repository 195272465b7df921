{{/* The chart's names and labels (the recommended app.kubernetes.io/* set). */}}
{{- define "driftwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "driftwarden.fullname" -}}
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

{{- define "driftwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "driftwarden.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "driftwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: monitor
app.kubernetes.io/part-of: driftwarden
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "driftwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "driftwarden.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The daemon's config file: the user's config with the chart's policies and state folder. */}}
{{- define "driftwarden.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $policies := list }}
{{- range $name, $_ := .Values.policies }}
{{- $policies = append $policies (printf "/etc/driftwarden/policies/%s" $name) }}
{{- end }}
{{- $_ := set $cfg "policies" $policies }}
{{- $_ := set $cfg "state_dir" "/var/lib/driftwarden" }}
{{- toYaml $cfg }}
{{- end }}
