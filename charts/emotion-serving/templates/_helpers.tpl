{{/*
Names, labels, images and ports shared by the whole chart tree.

Named templates are global across a chart and its subcharts: minio, ovms, triton and monitoring
call these, and nothing else defines names or labels. Templates that take a dict expect
"ctx" (the caller's top-level context, `$`) and "component" (minio, ovms, triton, packager, tests).
*/}}

{{/*
app.kubernetes.io/name of every object in the tree, whichever subchart renders it.
*/}}
{{- define "emotion-serving.name" -}}
emotion-serving
{{- end }}

{{/*
Base of every object name: global.fullnameOverride, else the release name when it already
contains "emotion-serving", else "<release>-emotion-serving"; at most 63 characters.
Takes the top-level context.
*/}}
{{- define "emotion-serving.fullname" -}}
{{- $name := include "emotion-serving.name" . -}}
{{- if .Values.global.fullnameOverride -}}
{{- .Values.global.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/*
"<base>-<component>": the base is cut first (as cert-manager does) so that the suffix always
survives whole within 63 characters. (dict "ctx" $ "component" "ovms")
*/}}
{{- define "emotion-serving.componentName" -}}
{{- $suffix := required "emotion-serving.componentName: component is required" .component -}}
{{- $base := include "emotion-serving.fullname" .ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end }}

{{/*
Name of a Job: "<base>-<component>-<8 hex digits of spec>", where spec is the text of every field that
Kubernetes keeps immutable on a Job (the pod template, podFailurePolicy...), so a change to any of them
is a new Job instead of a failed upgrade. (dict "ctx" $ "component" "packager" "spec" $text)
*/}}
{{- define "emotion-serving.jobName" -}}
{{- $hash := .spec | sha256sum | trunc 8 -}}
{{- include "emotion-serving.componentName" (dict "ctx" .ctx "component" (printf "%s-%s" .component $hash)) -}}
{{- end }}

{{/*
Selector labels: name, instance, component. (dict "ctx" $ "component" "ovms")
*/}}
{{- define "emotion-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "emotion-serving.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ required "emotion-serving.selectorLabels: component is required" .component }}
{{- end }}

{{/*
The full label set of every object. (dict "ctx" $ "component" "ovms")
*/}}
{{- define "emotion-serving.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "emotion-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "emotion-serving.name" .ctx }}
{{- end }}

{{/*
Container ports of each component: the one place that names and numbers them (docs/contracts.md).
Read with `include "emotion-serving.ports" . | fromYaml`.
*/}}
{{- define "emotion-serving.ports" -}}
minio:
  api: 9000
ovms:
  grpc: 9000
  http: 8000
triton:
  http: 8000
  grpc: 8001
  metrics: 8002
{{- end }}

{{/*
The inference servers, in order, with where each serves its metrics (a port of "emotion-serving.ports"
and a path): the chart's one list of servers, held equal to emotion_contract.servers by
tests/charts/test_cli_contract.py. Read with `include "emotion-serving.servers" . | fromYaml`.
*/}}
{{- define "emotion-serving.servers" -}}
ovms:
  metricsPort: http
  metricsPath: /metrics
triton:
  metricsPort: metrics
  metricsPath: /metrics
{{- end }}

{{/*
The ports of one component as a containerPorts list. (dict "ctx" $ "component" "ovms")
*/}}
{{- define "emotion-serving.containerPorts" -}}
{{- range $name, $port := get (include "emotion-serving.ports" .ctx | fromYaml) .component }}
- name: {{ $name }}
  containerPort: {{ $port }}
  protocol: TCP
{{- end }}
{{- end }}

{{/*
The registry an image is pulled from: global.imageRegistry (a mirror) when that is set and the image's
useGlobalRegistry is not false; else the image's own registry (may be empty). (dict "ctx" $ "image" .Values.image)
*/}}
{{- define "emotion-serving.imageRegistry" -}}
{{- $registry := .image.registry -}}
{{- if and .ctx.Values.global.imageRegistry (or (not (hasKey .image "useGlobalRegistry")) .image.useGlobalRegistry) -}}
{{- $registry = .ctx.Values.global.imageRegistry -}}
{{- end -}}
{{- $registry -}}
{{- end }}

{{/*
Image reference "[registry/]repository[:tag][@digest]", the registry from emotion-serving.imageRegistry.
(dict "ctx" $ "image" .Values.image)
*/}}
{{- define "emotion-serving.image" -}}
{{- $image := .image -}}
{{- if not (or $image.tag $image.digest) -}}
{{- fail (printf "image %s: set a tag or a digest" $image.repository) -}}
{{- end -}}
{{- $registry := include "emotion-serving.imageRegistry" . -}}
{{- $ref := $image.repository -}}
{{- if $registry }}{{ $ref = printf "%s/%s" $registry $ref }}{{ end -}}
{{- if $image.tag }}{{ $ref = printf "%s:%s" $ref $image.tag }}{{ end -}}
{{- if $image.digest }}{{ $ref = printf "%s@%s" $ref $image.digest }}{{ end -}}
{{- $ref -}}
{{- end }}

{{/*
`image:` and `imagePullPolicy:` lines of a container. (dict "ctx" $ "image" .Values.image)
*/}}
{{- define "emotion-serving.containerImage" -}}
image: {{ include "emotion-serving.image" . | quote }}
imagePullPolicy: {{ .image.pullPolicy }}
{{- end }}

{{/*
The packager image (Dockerfile.packager): the packager Job and the helm test pod. (the top-level context)
*/}}
{{- define "emotion-serving.packagerImage" -}}
{{- include "emotion-serving.containerImage" (dict "ctx" . "image" .Values.global.packager.image) -}}
{{- end }}

{{/*
The fetch image (Dockerfile.packager, target fetch): the servers' fetch-model initContainers. The
packager image's registry and repository with its own tag and digest (global.packager.fetch), so that
one repository holds both and one setting moves both. (the top-level context, or a subchart's)
*/}}
{{- define "emotion-serving.fetchImage" -}}
{{- $g := .Values.global.packager -}}
{{- $image := merge (pick $g.fetch "tag" "digest") (omit $g.image "tag" "digest") -}}
{{- include "emotion-serving.containerImage" (dict "ctx" . "image" $image) -}}
{{- end }}

{{/*
"true" when the packager image is the chart's default name with no registry in front of it: that image
is published nowhere (build Dockerfile.packager, push it, name it), so only a node that had it loaded
(`kind load docker-image`) can start the release's pods. (the top-level context)
*/}}
{{- define "emotion-serving.packagerImageUnpublished" -}}
{{- $image := .Values.global.packager.image -}}
{{- if and (eq $image.repository "emotion-serving/packager") (not (include "emotion-serving.imageRegistry" (dict "ctx" . "image" $image))) -}}
true
{{- end -}}
{{- end }}

{{/*
YAML documents joined by "---", leaving out those that rendered empty (objects turned off by values).
(list TEXT ...)
*/}}
{{- define "emotion-serving.documents" -}}
{{- $documents := list -}}
{{- range . }}{{ if trim . }}{{ $documents = append $documents (trim .) }}{{ end }}{{ end -}}
{{- join "\n---\n" $documents -}}
{{- end }}
