{{/*
Env vars read from the Secret. Table: values field -> env var, whether it is required and
whether it is used at all. With existingSecret, a key is read when its name is not "";
required ones fail the pod start when missing (fail closed), the others are optional. With
secrets.create, only the keys given a value are read.
*/}}
{{- define "medic.secretEnvTable" -}}
- {field: webhookToken, env: MEDIC_WEBHOOK_TOKEN, required: true, used: true}
- {field: webhookPassword, env: MEDIC_WEBHOOK_PASSWORD, required: true, used: true}
- {field: adminToken, env: MEDIC_ADMIN_TOKEN, required: false, used: true}
- {field: redisUrl, env: MEDIC_REDIS_URL, required: true, used: {{ .Values.backends.redis.enabled }}}
- {field: mongoUrl, env: MEDIC_MONGO_URL, required: true, used: {{ .Values.backends.mongo.enabled }}}
- {field: targetMongoUrl, env: MEDIC_TARGET_MONGO_URL, required: false, used: true}
- {field: targetRedisUrl, env: MEDIC_TARGET_REDIS_URL, required: false, used: true}
- {field: readToken, env: MEDIC_READ_TOKEN, required: false, used: true}
- {field: approvalSecret, env: MEDIC_APPROVAL_SECRET, required: false, used: true}
{{- end }}

{{- define "medic.secretEnv" -}}
{{- $secret := include "medic.secretName" . }}
{{- range (include "medic.secretEnvTable" . | fromYamlArray) }}
{{- $key := index $.Values.secrets.keys .field }}
{{- $given := index $.Values.secrets.values .field }}
{{- if and .used $secret $key (or $.Values.secrets.existingSecret $given) }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: {{ not .required }}
{{- else if and .used (has .field (list "redisUrl" "mongoUrl")) }}
{{- fail (printf "backends need their URL: set secrets.existingSecret (key secrets.keys.%s) or secrets.create with secrets.values.%s" .field .field) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Settings the chart sets itself (field names); `settings` may not repeat them. */}}
{{- define "medic.chartSettings" -}}
host port mode namespaces rules_dir playbooks_dir data_dir kube_mode log_level log_format workers prometheus_url loki_url public_url webhook_username webhook_token webhook_password admin_token redis_url mongo_url target_mongo_url target_redis_url read_token approval_secret
{{- end }}

{{- define "medic.env" -}}
- name: MEDIC_HOST
  value: "0.0.0.0"
- name: MEDIC_PORT
  value: "8080"
- name: MEDIC_MODE
  value: {{ .Values.mode | quote }}
- name: MEDIC_NAMESPACES
  value: {{ join "," .Values.namespaces | quote }}
- name: MEDIC_RULES_DIR
  value: /etc/medic/rules
- name: MEDIC_PLAYBOOKS_DIR
  value: /etc/medic/playbooks
- name: MEDIC_DATA_DIR
  value: /var/lib/medic
- name: MEDIC_KUBE_MODE
  value: in-cluster
- name: MEDIC_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: MEDIC_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: MEDIC_WORKERS
  value: {{ .Values.workers | quote }}
{{- with .Values.targets.prometheusUrl }}
- name: MEDIC_PROMETHEUS_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.targets.lokiUrl }}
- name: MEDIC_LOKI_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.publicUrl }}
- name: MEDIC_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.webhook.username }}
- name: MEDIC_WEBHOOK_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- include "medic.secretEnv" . }}
{{- $taken := splitList " " (include "medic.chartSettings" .) }}
{{- range $name, $value := .Values.settings }}
{{- if has (lower $name) $taken }}
{{- fail (printf "settings.%s is set by the chart: use its own value instead" $name) }}
{{- end }}
- name: MEDIC_{{ upper $name }}
  {{- if or (kindIs "slice" $value) (kindIs "map" $value) }}
  value: {{ toJson $value | quote }}
  {{- else if and (kindIs "float64" $value) (eq (floor $value) $value) }}
  value: {{ printf "%d" (int64 $value) | quote }}
  {{- else }}
  value: {{ toString $value | quote }}
  {{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
