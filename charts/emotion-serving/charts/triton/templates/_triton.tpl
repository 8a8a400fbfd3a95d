{{/*
tritonserver's arguments (Triton core src/command_line_parser.cc; REFERENCE.md). The repository is the
local folder the fetch initContainer filled with the one version this pod serves (its configs name
it); the ports are the contract's.
*/}}
{{- define "emotion-serving.triton.args" -}}
{{- $ports := (include "emotion-serving.ports" . | fromYaml).triton -}}
{{- $configName := .Values.modelConfigName | default (ternary "" "cpu" .Values.gpu.enabled) -}}
- --model-repository={{ include "emotion-serving.modelRepository" . }}
- --model-control-mode={{ .Values.modelControlMode }}
{{- if eq .Values.modelControlMode "poll" }}
- --repository-poll-secs={{ .Values.repositoryPollSecs }}
{{- else if eq .Values.modelControlMode "explicit" }}
{{- range include "emotion-serving.triton.models" . | fromYamlArray }}
- --load-model={{ . }}
{{- end }}
{{- end }}
{{- with $configName }}
- --model-config-name={{ . }}
{{- end }}
- --strict-readiness={{ .Values.strictReadiness }}
- --exit-timeout-secs={{ .Values.exitTimeoutSecs }}
- --http-port={{ $ports.http }}
- --grpc-port={{ $ports.grpc }}
- --metrics-port={{ $ports.metrics }}
- --allow-metrics=true
- --allow-gpu-metrics={{ .Values.gpu.enabled }}
{{- range .Values.metricsConfig }}
- --metrics-config={{ . }}
{{- end }}
- --log-verbose={{ .Values.logVerbose }}
{{- end }}

{{/*
The models Triton serves from the bucket's triton/ folder (docs/contracts.md): the classifier, and
with global.model.text the tokenizer and the ensemble that chains them.
*/}}
{{- define "emotion-serving.triton.models" -}}
{{- $name := .Values.global.model.name -}}
- {{ $name }}
{{- if .Values.global.model.text }}
- {{ $name }}-tokenizer
- {{ $name }}-text
{{- end }}
{{- end }}

{{/*
Triton reads no S3 (the fetch initContainer has the credentials): its environment is the user's only.
*/}}
{{- define "emotion-serving.triton.env" -}}
{{- end }}

{{- define "emotion-serving.triton.volumes" -}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shmSizeLimit }}
{{- include "emotion-serving.s3.caVolume" . }}
{{- end }}

{{- define "emotion-serving.triton.volumeMounts" -}}
- name: dshm
  mountPath: /dev/shm
{{- end }}

{{/*
Resources with the GPUs added to the limits (extended resources need no request).
*/}}
{{- define "emotion-serving.triton.resources" -}}
{{- $resources := deepCopy .Values.resources -}}
{{- if .Values.gpu.enabled }}
{{- $limits := $resources.limits | default dict }}
{{- $_ := set $limits .Values.gpu.resourceName (int .Values.gpu.count) }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- toYaml $resources }}
{{- end }}
