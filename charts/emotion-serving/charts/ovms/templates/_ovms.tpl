{{/*
OVMS's config.json: the token model `<name>` and, with global.model.text, the raw-text model
`<name>-text`, both from the bucket, with the same device, plugin_config and version policy.
Per-model settings live here because OVMS rejects them on the command line next to --config_path;
metrics are switched on here only, since enabling them in both places is a config error
(model_server docs/parameters.md, src/config.cpp).
*/}}
{{- define "emotion-serving.ovms.config" -}}
{{- $config := .Values.config -}}
{{- if and $config.performanceHint $config.numStreams }}
{{- fail "ovms.config: set performanceHint or numStreams, not both (OVMS refuses PERFORMANCE_HINT with NUM_STREAMS)" }}
{{- end }}
{{- $plugin := dict -}}
{{- with $config.performanceHint }}{{ $_ := set $plugin "PERFORMANCE_HINT" . }}{{ end }}
{{- with $config.numStreams }}{{ $_ := set $plugin "NUM_STREAMS" (toString .) }}{{ end }}
{{- with $config.inferencePrecisionHint }}{{ $_ := set $plugin "INFERENCE_PRECISION_HINT" . }}{{ end }}
{{- $plugin = merge $plugin $config.extraPluginConfig }}
{{- $names := list .Values.global.model.name }}
{{- if .Values.global.model.text }}{{ $names = append $names (printf "%s-text" .Values.global.model.name) }}{{ end }}
{{- $policy := $config.versionPolicy }}
{{- $versionPolicy := dict "all" dict }}
{{- if eq $policy.type "latest" }}
{{- $versionPolicy = dict "latest" (dict "num_versions" (int $policy.numVersions)) }}
{{- else if eq $policy.type "specific" }}
{{- if not $policy.versions }}
{{- fail "ovms.config.versionPolicy.versions: list the versions to serve with type specific" }}
{{- end }}
{{- $versionPolicy = dict "specific" (dict "versions" $policy.versions) }}
{{- end }}
{{- $models := list }}
{{- range $names }}
{{- $model := dict "name" . "base_path" (include "emotion-serving.s3.ovmsBasePath" (dict "ctx" $ "model" .)) "target_device" $config.targetDevice "model_version_policy" $versionPolicy }}
{{- with $plugin }}{{ $_ := set $model "plugin_config" . }}{{ end }}
{{- with $config.nireq }}{{ $_ := set $model "nireq" (int .) }}{{ end }}
{{- $models = append $models (dict "config" $model) }}
{{- end }}
{{- $metrics := dict "enable" $config.metrics.enabled }}
{{- with $config.metrics.list }}{{ $_ := set $metrics "metrics_list" . }}{{ end }}
{{- toPrettyJson (dict "model_config_list" $models "monitoring" (dict "metrics" $metrics)) }}
{{- end }}

{{/*
S3 as OVMS reads it: S3_ENDPOINT (the scheme picks HTTP or HTTPS) and AWS_REGION, not
AWS_DEFAULT_REGION (model_server src/filesystem/s3filesystem.cpp).
*/}}
{{- define "emotion-serving.ovms.env" -}}
- name: S3_ENDPOINT
  value: {{ include "emotion-serving.s3.endpoint" . | quote }}
- name: AWS_REGION
  value: {{ .Values.global.s3.region | quote }}
{{ include "emotion-serving.s3.credentialsEnv" (dict "ctx" . "access" "reader") }}
{{- end }}

{{- define "emotion-serving.ovms.volumes" -}}
- name: config
  configMap:
    name: {{ include "emotion-serving.componentName" (dict "ctx" . "component" "ovms") }}
{{- include "emotion-serving.s3.caVolume" . }}
{{- end }}

{{- define "emotion-serving.ovms.volumeMounts" -}}
- name: config
  mountPath: /config
  readOnly: true
{{- include "emotion-serving.s3.caMount" (dict "ctx" . "path" .Values.caBundlePath) }}
{{- end }}
