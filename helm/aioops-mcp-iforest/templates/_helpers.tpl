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
placeholders are left out. DATABASE_URL comes from secrets.DATABASE_URL only (env.DATABASE_URL is
refused by aioops.checks).
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
{{- with .Values.secrets }}{{- with get . "DATABASE_URL" }}{{- $_ := set $data "DATABASE_URL" (toString .) }}{{- end }}{{- end }}
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
{{- $secretKeys := append (include "aioops.secretKeys" . | fromJsonArray) "DATABASE_URL" }}
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
{{- with include "aioops.databaseCaFile" . }}
{{- $_ := set $config "DATABASE_CA_FILE" . }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/*
"true" when the pods get a PostgreSQL URL: secrets.DATABASE_URL (stored in the chart's Secret), or
the DATABASE_URL key of secrets.existingSecret when database.urlFromExistingSecret says it is there.
Empty: the embedded SQLite database under DATA_DIR, one replica.
*/}}
{{- define "aioops.databaseUrlGiven" -}}
{{- if .Values.secrets.existingSecret }}
{{- if (.Values.database).urlFromExistingSecret }}true{{- end }}
{{- else if (.Values.secrets).DATABASE_URL }}true
{{- end }}
{{- end }}

{{/* Where the CA bundle of database.caSecret is mounted. */}}
{{- define "aioops.databaseCaDir" -}}
/etc/aioops/database-ca
{{- end }}

{{/* DATABASE_CA_FILE: the mounted key of database.caSecret, or empty. */}}
{{- define "aioops.databaseCaFile" -}}
{{- with ((.Values.database).caSecret) }}
{{- if .name }}
{{- printf "%s/%s" (include "aioops.databaseCaDir" $) (default "ca.crt" .key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pods the server may run at once: replicaCount, or autoscaling.maxReplicas when autoscaling is on.
*/}}
{{- define "aioops.maxPods" -}}
{{- if .Values.autoscaling.enabled }}
{{- int .Values.autoscaling.maxReplicas }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Pods that always run: replicaCount, or autoscaling.minReplicas when autoscaling is on. A
PodDisruptionBudget is rendered only when this is more than 1.
*/}}
{{- define "aioops.minPods" -}}
{{- if .Values.autoscaling.enabled }}
{{- int .Values.autoscaling.minReplicas }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
The rules values.schema.json states, again with the reason, for what the schema cannot see (or a
render with --skip-schema-validation): several replicas need a database URL, the URL is a secret,
a ReadWriteOnce claim is not shared.
*/}}
{{- define "aioops.checks" -}}
{{- $db := include "aioops.databaseUrlGiven" . }}
{{- $how := "set secrets.DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DB?sslmode=require, or put DATABASE_URL in secrets.existingSecret and set database.urlFromExistingSecret=true (docs/kubernetes.md, section Several replicas on PostgreSQL)" }}
{{- with .Values.env }}
{{- if and (hasKey . "DATABASE_URL") (not (kindIs "invalid" (index . "DATABASE_URL"))) }}
{{- fail "env.DATABASE_URL: the database URL is a credential and env goes into a ConfigMap; give it as secrets.DATABASE_URL (stored in the chart's Secret), or as the DATABASE_URL key of secrets.existingSecret with database.urlFromExistingSecret=true." }}
{{- end }}
{{- end }}
{{- if and (.Values.database).urlFromExistingSecret (not .Values.secrets.existingSecret) }}
{{- fail "database.urlFromExistingSecret=true reads DATABASE_URL from secrets.existingSecret, which is empty: name the Secret that holds it, or give the URL as secrets.DATABASE_URL instead." }}
{{- end }}
{{- if and .Values.secrets.existingSecret .Values.secrets.DATABASE_URL }}
{{- fail "secrets.DATABASE_URL is set together with secrets.existingSecret, so the chart creates no Secret to hold it: put DATABASE_URL in that Secret and set database.urlFromExistingSecret=true, or drop secrets.existingSecret." }}
{{- end }}
{{- if and (((.Values.database).caSecret).name) (not $db) }}
{{- fail (printf "database.caSecret is set but the pods get no database URL: %s." $how) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not $db) }}
{{- fail (printf "autoscaling.enabled: without a database URL the service keeps its state (anomalies, feedback, models) in one pod's SQLite database, so it runs as a single replica; leave autoscaling off, or use PostgreSQL: %s." $how) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not $db) }}
{{- fail (printf "replicaCount=%d: without a database URL the service keeps its state (anomalies, feedback, models) in one pod's SQLite database, so it runs as a single replica and each further one would learn and answer from a state of its own; keep replicaCount at 0 or 1, or use PostgreSQL: %s." (int .Values.replicaCount) $how) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if lt (int .Values.autoscaling.minReplicas) 1 }}
{{- fail "autoscaling.minReplicas must be at least 1 when autoscaling is enabled." }}
{{- end }}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) }}
{{- fail (printf "autoscaling.maxReplicas (%d) is below autoscaling.minReplicas (%d)." (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- end }}
{{- end }}
{{- $maxPods := include "aioops.maxPods" . | int }}
{{- if and .Values.persistence.enabled (gt $maxPods 1) }}
{{- fail (printf "persistence.enabled with up to %d replicas: a ReadWriteOnce claim for DATA_DIR cannot be shared by several pods, and with PostgreSQL DATA_DIR keeps nothing that must survive (models are stored in the database); set persistence.enabled=false, DATA_DIR is then an emptyDir." $maxPods) }}
{{- end }}
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
