{{/* Names */}}
{{- define "medic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "medic.fullname" -}}
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

{{- define "medic.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "medic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "medic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "medic.labels" -}}
helm.sh/chart: {{ include "medic.chart" . }}
{{ include "medic.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: first-responder
app.kubernetes.io/part-of: playcode
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "medic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "medic.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "medic.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* State: "production" when both of Medic's own backends are enabled, else "embedded". */}}
{{- define "medic.stateMode" -}}
{{- if and .Values.backends.redis.enabled .Values.backends.mongo.enabled }}production{{ else }}embedded{{ end }}
{{- end }}

{{/* SQLite is in use when either backend is missing. */}}
{{- define "medic.usesSqlite" -}}
{{- if eq (include "medic.stateMode" .) "embedded" }}true{{ end }}
{{- end }}

{{- define "medic.replicas" -}}
{{- include "medic.validate" . }}
{{- $replicas := .Values.replicaCount }}
{{- if kindIs "invalid" $replicas }}
{{- $replicas = ternary 2 1 (eq (include "medic.stateMode" .) "production") }}
{{- end }}
{{- if and (gt (int $replicas) 1) (include "medic.usesSqlite" .) }}
{{- fail "replicaCount > 1 needs both backends.redis.enabled and backends.mongo.enabled: the embedded SQLite store is single-writer" }}
{{- end }}
{{- int $replicas }}
{{- end }}

{{/* The Secret env vars read from: existingSecret, the chart-created one, or "" (none). */}}
{{- define "medic.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.create }}
{{- include "medic.fullname" . }}
{{- end }}
{{- end }}

{{- define "medic.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "medic.fullname" .)) .Values.config.existingRulesConfigMap }}
{{- end }}

{{- define "medic.ruleTestsConfigMap" -}}
{{- if .Values.config.existingRuleTestsConfigMap }}{{ .Values.config.existingRuleTestsConfigMap }}
{{- else if .Values.config.ruleTests }}{{ printf "%s-rule-tests" (include "medic.fullname" .) }}
{{- end }}
{{- end }}

{{- define "medic.playbooksConfigMap" -}}
{{- default (printf "%s-playbooks" (include "medic.fullname" .)) .Values.config.existingPlaybooksConfigMap }}
{{- end }}

{{/*
Config files for one kind ("rules" or "playbooks"): the chart's files/<kind>/*.yaml|*.yml (the
repo's files, through symlinks) when config.builtin, overlaid by config.<kind>. A dict
filename -> content, as JSON (a YAML round trip would lose trailing newlines).
*/}}
{{- define "medic.configFiles" -}}
{{- $root := .root }}
{{- $files := dict }}
{{- if $root.Values.config.builtin }}
{{- range $path, $_ := $root.Files.Glob (printf "files/%s/*.{yaml,yml}" .kind) }}
{{- $_ := set $files (base $path) ($root.Files.Get $path) }}
{{- end }}
{{- end }}
{{- range $name, $content := index $root.Values.config .kind }}
{{- $_ := set $files $name $content }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/*
RBAC rules for one allow-listed namespace: read access, plus the write verb of each enabled
action. Never secrets, never pods/exec, never a wildcard.
*/}}
{{- define "medic.namespaceRules" -}}
{{- $a := .Values.actions }}
- apiGroups: [""]
  resources: [pods, events, persistentvolumeclaims, services]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# get only: when the ConfigMaps the target's pods read last changed (Medic keeps no data)
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [apps]
  resources: [deployments, replicasets, statefulsets]
  verbs: [get, list, watch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch]
- apiGroups: [batch]
  resources: [cronjobs, jobs]
  verbs: [get, list, watch]
- apiGroups: [metrics.k8s.io]
  resources: [pods]
  verbs: [get, list]
{{- if .Values.rbac.certManager }}
- apiGroups: [cert-manager.io]
  resources: [certificates, certificaterequests, issuers]
  verbs: [get, list, watch]
- apiGroups: [acme.cert-manager.io]
  resources: [orders, challenges]
  verbs: [get, list, watch]
{{- end }}
{{- range .Values.rbac.extraReadRules }}
{{- range concat .apiGroups .resources }}
{{- if or (contains "*" .) (has . (list "secrets" "pods/exec" "pods/attach" "pods/portforward" "serviceaccounts/token")) }}
{{- fail (printf "rbac.extraReadRules: %q is not allowed (no wildcards, secrets or exec)" .) }}
{{- end }}
{{- end }}
- apiGroups: {{ toJson .apiGroups }}
  resources: {{ toJson .resources }}
  verbs: [get, list, watch]
{{- end }}
{{- if or $a.rollback $a.restart $a.setImage }}
# actions: {{ without (list (ternary "rollback" "" $a.rollback) (ternary "restart" "" $a.restart) (ternary "setImage" "" $a.setImage)) "" | join ", " }}
- apiGroups: [apps]
  resources: [deployments]
  verbs: [patch]
{{- end }}
{{- if $a.deletePod }}
# actions: deletePod
- apiGroups: [""]
  resources: [pods]
  verbs: [delete]
{{- end }}
{{- if $a.createJobFromCronjob }}
# actions: createJobFromCronjob
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create]
{{- end }}
{{- if $a.renewCertificate }}
# actions: renewCertificate (cmctl renew: the Issuing condition, through the status subresource)
- apiGroups: [cert-manager.io]
  resources: [certificates/status]
  verbs: [patch]
{{- end }}
{{- end }}

{{/*
Refuse, at render time, values Medic itself would refuse at start-up (a pod that crash-loops on
its config is worse than a failed `helm upgrade`). Included by the Deployment.
*/}}
{{- define "medic.validate" -}}
{{- $b := .Values.backends }}
{{- if ne $b.redis.enabled $b.mongo.enabled }}
{{- fail (printf "backends.%s.enabled is true but backends.%s.enabled is not: Medic refuses one of its production backends without the other (Redis coordinates the replicas, MongoDB keeps their incidents). Enable both, or neither for the embedded single-replica SQLite store" (ternary "redis" "mongo" $b.redis.enabled) (ternary "mongo" "redis" $b.redis.enabled)) }}
{{- end }}
{{- $s := .Values.secrets }}
{{- if and $s.create (not $s.existingSecret) }}
{{- range $field, $value := $s.values }}
{{- if and $value (not (index $s.keys $field)) }}
{{- fail (printf "secrets.values.%s is given but secrets.keys.%s is empty: it would be ignored. Give the key a name (e.g. the default in values.yaml)" $field $field) }}
{{- end }}
{{- end }}
{{- end }}
{{- $password := and (include "medic.secretName" .) $s.keys.webhookPassword (or $s.existingSecret $s.values.webhookPassword) }}
{{- if and .Values.webhook.username (not $password) }}
{{- fail "webhook.username is set but no basic-auth password is read: set secrets.keys.webhookPassword (its key in secrets.existingSecret), or unset webhook.username. Medic refuses a user name without a password" }}
{{- end }}
{{- if and $password (not .Values.webhook.username) }}
{{- fail "a basic-auth password is read (secrets.keys.webhookPassword) but webhook.username is empty: Medic refuses a password without a user name (it would leave the webhook open)" }}
{{- end }}
{{- $taken := list }}
{{- range splitList " " (include "medic.chartSettings" .) }}
{{- $taken = append $taken (printf "MEDIC_%s" (upper .)) }}
{{- end }}
{{- $volumes := list "tmp" "data" "rules" "playbooks" }}
{{- range .Values.extraVolumes }}
{{- if has .name $volumes }}
{{- fail (printf "extraVolumes: the volume name %q is taken (the chart's are %s)" .name (join ", " (list "tmp" "data" "rules" "playbooks"))) }}
{{- end }}
{{- $volumes = append $volumes .name }}
{{- end }}
{{- $paths := list "/tmp" "/var/lib/medic" "/etc/medic/rules" "/etc/medic/playbooks" }}
{{- range .Values.extraVolumeMounts }}
{{- if not (has .name $volumes) }}
{{- fail (printf "extraVolumeMounts: %q mounts no volume of the pod (add it to extraVolumes)" .name) }}
{{- end }}
{{- $path := .mountPath | trimSuffix "/" }}
{{- range $paths }}
{{- if or (eq $path .) (hasPrefix (printf "%s/" .) $path) (hasPrefix (printf "%s/" $path) .) }}
{{- fail (printf "extraVolumeMounts: %s overlaps the chart's mount %s" $path .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if has .name $taken }}
{{- fail (printf "extraEnv: %s is set by the chart: use its value instead (see values.yaml)" .name) }}
{{- end }}
{{- end }}
{{- end }}
