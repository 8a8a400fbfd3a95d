{{/*
OVMS's config.json: the token model `<name>` and, with global.model.text, the raw-text model
`<name>-text`, both from the local repository the fetch initContainer filled with one version, with
the same device and plugin_config. The version policy names global.model.version when it is pinned
(specific), else the one version there (latest 1).
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
{{- with .Values.global.model.inferencePrecisionHint }}{{ $_ := set $plugin "INFERENCE_PRECISION_HINT" . }}{{ end }}
{{- $plugin = merge $plugin $config.extraPluginConfig }}
{{- $names := list .Values.global.model.name }}
{{- if .Values.global.model.text }}{{ $names = append $names (printf "%s-text" .Values.global.model.name) }}{{ end }}
{{- $versionPolicy := dict "latest" (dict "num_versions" 1) }}
{{- with .Values.global.model.version }}
{{- $versionPolicy = dict "specific" (dict "versions" (list (int .))) }}
{{- end }}
{{- $models := list }}
{{- range $names }}
{{- $model := dict "name" . "base_path" (printf "%s/%s" (include "emotion-serving.modelRepository" $) .) "target_device" $config.targetDevice "model_version_policy" $versionPolicy }}
{{- with $plugin }}{{ $_ := set $model "plugin_config" . }}{{ end }}
{{- with $config.nireq }}{{ $_ := set $model "nireq" (int .) }}{{ end }}
{{- $models = append $models (dict "config" $model) }}
{{- end }}
{{- $metrics := dict "enable" $config.metrics.enabled }}
{{- with $config.metrics.list }}{{ $_ := set $metrics "metrics_list" . }}{{ end }}
{{- toPrettyJson (dict "model_config_list" $models "monitoring" (dict "metrics" $metrics)) }}
{{- end }}

{{/*
OVMS reads no S3 (the fetch initContainer has the credentials): its environment is the user's only.
*/}}
{{- define "emotion-serving.ovms.env" -}}
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
{{- end }}
