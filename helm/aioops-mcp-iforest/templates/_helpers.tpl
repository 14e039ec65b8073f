{{/* Chart name, truncated to a DNS label. */}}
{{- define "aioops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name, so
`helm install aioops-mcp-iforest ./helm/aioops-mcp-iforest` gives svc/aioops-mcp-iforest.
*/}}
{{- define "aioops.fullname" -}}
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

{{- define "aioops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aioops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aioops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aioops.labels" -}}
helm.sh/chart: {{ include "aioops.chart" . }}
{{ include "aioops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "aioops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aioops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The secret variables (alert channels, the API token), which only ever travel in a Secret. */}}
{{- define "aioops.secretKeys" -}}
{{- list "SLACK_WEBHOOK_URL" "PAGERDUTY_ROUTING_KEY" "GENERIC_WEBHOOK_URL" "API_TOKEN" | toJson }}
{{- end }}

{{/* The original chart's placeholder values: shipped defaults, never real endpoints. */}}
{{- define "aioops.placeholders" -}}
{{- list "your_slack_webhook_url" "your_pagerduty_routing_key" "any_http_webhook_url" | toJson }}
{{- end }}

{{/*
The secret values to store, as a dict: secrets.X wins over env.X; empty values and the original's
placeholders are left out.
*/}}
{{- define "aioops.secretData" -}}
{{- $data := dict }}
{{- $placeholders := include "aioops.placeholders" . | fromJsonArray }}
{{- range $key := include "aioops.secretKeys" . | fromJsonArray }}
{{- $value := "" }}
{{- with $.Values.env }}{{- $value = toString (default "" (get . $key)) }}{{- end }}
{{- with $.Values.secrets }}{{- if get . $key }}{{- $value = toString (get . $key) }}{{- end }}{{- end }}
{{- if and $value (not (has $value $placeholders)) }}
{{- $_ := set $data $key $value }}
{{- end }}
{{- end }}
{{- toJson $data }}
{{- end }}

{{/* Whether the original's placeholders were found, for NOTES.txt. */}}
{{- define "aioops.placeholdersFound" -}}
{{- $found := list }}
{{- $placeholders := include "aioops.placeholders" . | fromJsonArray }}
{{- range $key := include "aioops.secretKeys" . | fromJsonArray }}
{{- with $.Values.env }}{{- if has (toString (default "" (get . $key))) $placeholders }}{{- $found = append $found $key }}{{- end }}{{- end }}
{{- end }}
{{- join ", " $found }}
{{- end }}

{{/* The name of the Secret the pod reads: the existing one, or the chart's when it has data. */}}
{{- define "aioops.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if (include "aioops.secretData" . | fromJson) }}
{{- printf "%s-alerts" (include "aioops.fullname" .) }}
{{- end }}
{{- end }}

{{/* The container port: env.API_PORT when given, else 8000. */}}
{{- define "aioops.containerPort" -}}
{{- $port := 8000 }}
{{- with .Values.env }}{{- with get . "API_PORT" }}{{- $port = int . }}{{- end }}{{- end }}
{{- $port }}
{{- end }}

{{/* The settings for the ConfigMap: env without the secrets, plus what the chart must set. */}}
{{- define "aioops.config" -}}
{{- $config := dict }}
{{- $secretKeys := include "aioops.secretKeys" . | fromJsonArray }}
{{- range $key, $value := .Values.env }}
{{- if and (not (has $key $secretKeys)) (not (kindIs "invalid" $value)) }}
{{- $_ := set $config $key (toString $value) }}
{{- end }}
{{- end }}
{{- $_ := set $config "API_HOST" (default "0.0.0.0" (get $config "API_HOST")) }}
{{- $_ := set $config "API_PORT" (include "aioops.containerPort" .) }}
{{- $_ := set $config "DATA_DIR" .Values.dataDir }}
{{- if (.Values.otlp).enabled }}
{{- $_ := set $config "OTLP_HTTP_PORT" (toString (default 4318 .Values.otlp.port)) }}
{{- end }}
{{- if not (get $config "MCP_ALLOWED_HOSTS") }}
{{- $_ := set $config "MCP_ALLOWED_HOSTS" (include "aioops.mcpAllowedHosts" .) }}
{{- end }}
{{- if and (not (get $config "MCP_ALLOWED_ORIGINS")) .Values.mcp.allowedOrigins }}
{{- $_ := set $config "MCP_ALLOWED_ORIGINS" (join "," .Values.mcp.allowedOrigins) }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/*
The Host names /mcp answers (MCP_ALLOWED_HOSTS): the release's Service by every name the cluster
resolves, loopback (port-forward), and mcp.allowedHosts (an ingress host, say).
*/}}
{{- define "aioops.mcpAllowedHosts" -}}
{{- $service := include "aioops.fullname" . }}
{{- $namespace := .Release.Namespace }}
{{- $hosts := list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.cluster.local" $service $namespace) "localhost" "127.0.0.1" "::1" }}
{{- range .Values.mcp.allowedHosts }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- join "," ($hosts | uniq) }}
{{- end }}

{{/* The log generator's values, honouring the original README's `log-generator:` spelling too. */}}
{{- define "aioops.logGenerator" -}}
{{- $lg := deepCopy .Values.logGenerator }}
{{- with (index .Values "log-generator") }}
{{- $lg = mergeOverwrite $lg (deepCopy .) }}
{{- end }}
{{- toJson $lg }}
{{- end }}

{{- define "aioops.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}

{{/* The pods' own annotations: podAnnotations over the Prometheus scrape annotations. */}}
{{- define "aioops.podAnnotations" -}}
{{- $annotations := dict }}
{{- if .Values.metrics.scrapeAnnotations }}
{{- $_ := set $annotations "prometheus.io/scrape" "true" }}
{{- $_ := set $annotations "prometheus.io/port" (include "aioops.containerPort" .) }}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
{{- end }}
{{- with .Values.podAnnotations }}
{{- $annotations = merge (deepCopy .) $annotations }}
{{- end }}
{{- if $annotations }}
{{- toYaml $annotations }}
{{- end }}
{{- end }}
