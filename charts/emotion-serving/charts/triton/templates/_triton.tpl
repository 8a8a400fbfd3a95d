{{/*
tritonserver's arguments (Triton core src/command_line_parser.cc; REFERENCE.md). The repository URL
carries the S3 endpoint; the ports are the contract's.
*/}}
{{- define "emotion-serving.triton.args" -}}
{{- $ports := (include "emotion-serving.ports" . | fromYaml).triton -}}
{{- $configName := .Values.modelConfigName | default (ternary "" "cpu" .Values.gpu.enabled) -}}
- --model-repository={{ include "emotion-serving.s3.tritonRepository" . }}
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
S3 as Triton reads it: the endpoint in the repository URL, AWS_DEFAULT_REGION (not AWS_REGION) and the
keys (Triton core src/filesystem/implementations/s3.h).
*/}}
{{- define "emotion-serving.triton.env" -}}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.global.s3.region | quote }}
{{ include "emotion-serving.s3.credentialsEnv" (dict "ctx" . "access" "reader") }}
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
{{- include "emotion-serving.s3.caMount" (dict "ctx" . "path" .Values.caBundlePath) }}
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
