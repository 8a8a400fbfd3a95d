{{/*
S3 wiring, from the one values block global.s3. Every part reads its endpoint, bucket, region,
credentials and CA through these templates. Templates here take the top-level context unless said.
*/}}

{{/*
The endpoint URL: global.s3.endpoint, else the bundled MinIO's Service (the umbrella refuses an
empty endpoint with minio.enabled=false, and an endpoint with minio.enabled=true).
*/}}
{{- define "emotion-serving.s3.endpoint" -}}
{{- if .Values.global.s3.endpoint -}}
{{- .Values.global.s3.endpoint | trimSuffix "/" -}}
{{- else -}}
{{- $port := (include "emotion-serving.ports" . | fromYaml).minio.api -}}
{{- printf "http://%s.%s.svc:%v" (include "emotion-serving.componentName" (dict "ctx" . "component" "minio")) .Release.Namespace $port -}}
{{- end -}}
{{- end }}

{{/*
The endpoint's "host:port", with the scheme's default port made explicit.
*/}}
{{- define "emotion-serving.s3.hostPort" -}}
{{- $url := urlParse (include "emotion-serving.s3.endpoint" .) -}}
{{- if regexMatch ":[0-9]+$" $url.host -}}
{{- $url.host -}}
{{- else -}}
{{- printf "%s:%s" $url.host (ternary "443" "80" (eq $url.scheme "https")) -}}
{{- end -}}
{{- end }}

{{/*
NetworkPolicy egress rule to the S3 endpoint: the bundled MinIO's pods, or the endpoint's port
anywhere (an external endpoint's addresses are not known here).
*/}}
{{- define "emotion-serving.s3.egressRule" -}}
{{- $port := splitList ":" (include "emotion-serving.s3.hostPort" .) | last -}}
- ports:
    - port: {{ $port }}
      protocol: TCP
  {{- if not .Values.global.s3.endpoint }}
  to:
    - podSelector:
        matchLabels:
          {{- include "emotion-serving.selectorLabels" (dict "ctx" . "component" "minio") | nindent 10 }}
  {{- end }}
{{- end }}

{{/*
Secret with the S3 credentials of "access": "reader" (the servers: list and read) or "writer" (the
packager: read and write). global.s3.existingSecret / writerExistingSecret, else the one the bundled
MinIO generates. (dict "ctx" $ "access" "reader")
*/}}
{{- define "emotion-serving.s3.secretName" -}}
{{- $s3 := .ctx.Values.global.s3 -}}
{{- $existing := ternary $s3.writerExistingSecret $s3.existingSecret (eq .access "writer") -}}
{{- $existing | default (include "emotion-serving.componentName" (dict "ctx" .ctx "component" (printf "s3-%s" .access))) -}}
{{- end }}

{{/*
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from that Secret. (dict "ctx" $ "access" "reader")
*/}}
{{- define "emotion-serving.s3.credentialsEnv" -}}
{{- $secret := include "emotion-serving.s3.secretName" . -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .ctx.Values.global.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .ctx.Values.global.s3.secretAccessKeyKey }}
{{- end }}

{{/*
The volume holding the S3 endpoint's CA bundle (global.s3.ca), as file "ca.crt"; nothing without one.
*/}}
{{- define "emotion-serving.s3.caVolume" -}}
{{- with .Values.global.s3.ca.configMap }}
- name: s3-ca
  configMap:
    name: {{ . }}
    items:
      - key: {{ $.Values.global.s3.ca.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{/*
Where the project's own tools (fetch, packager, load test, helm test) read that CA bundle: their
--ca-bundle, SSL_CERT_FILE.
*/}}
{{- define "emotion-serving.s3.caFile" -}}
/etc/emotion-serving/s3-ca/ca.crt
{{- end }}

{{/*
Mount of that CA bundle as one file at "path", by default emotion-serving.s3.caFile (a server mounts it
at its system CA bundle: OVMS and Triton have no CA option of their own and verify against it).
(dict "ctx" $ ["path" PATH])
*/}}
{{- define "emotion-serving.s3.caMount" -}}
{{- if .ctx.Values.global.s3.ca.configMap }}
- name: s3-ca
  mountPath: {{ .path | default (include "emotion-serving.s3.caFile" .ctx) }}
  subPath: ca.crt
  readOnly: true
{{- end }}
{{- end }}

{{/*
The local model repository a server serves: the fetch initContainer fills it in the pod's /tmp emptyDir,
the server reads nothing else (no S3 access of its own, no polling of the bucket).
*/}}
{{- define "emotion-serving.modelRepository" -}}
/tmp/models
{{- end }}

{{/*
The initContainer of each server: `model-packager fetch` waits until the version is published and
complete, then downloads that one version of the server's models, each file checked against its
manifest, into emotion-serving.modelRepository. The version is global.model.version (a pin: every pod
of the release serves it, whatever is published later); else the one the release's packager run
recorded for its model request (emotion-serving.model.request: a model change changes the pod
template, so both servers roll onto the new build and only onto it); without the release's packager,
the one READY names when the pod starts. (dict "ctx" $ "component" "ovms"|"triton"); its timeout and
resources are global.wait's.
*/}}
{{- define "emotion-serving.fetchModel" -}}
{{- $g := .ctx.Values.global -}}
- name: fetch-model
  {{- include "emotion-serving.fetchImage" .ctx | nindent 2 }}
  command: ["model-packager"]
  args:
    - fetch
    - --server={{ .component }}
    - --endpoint={{ include "emotion-serving.s3.endpoint" .ctx }}
    - --bucket={{ $g.s3.bucket }}
    - --name={{ $g.model.name }}
    {{- with include "emotion-serving.model.servedArg" .ctx }}
    - {{ . }}
    {{- end }}
    - --output={{ include "emotion-serving.modelRepository" . }}
    - --timeout={{ $g.wait.timeoutSeconds }}
    {{- if $g.s3.ca.configMap }}
    - --ca-bundle={{ include "emotion-serving.s3.caFile" . }}
    {{- end }}
  env:
    - name: AWS_REGION
      value: {{ $g.s3.region | quote }}
    {{- include "emotion-serving.s3.credentialsEnv" (dict "ctx" .ctx "access" "reader") | nindent 4 }}
  resources:
    {{- toYaml $g.wait.resources | nindent 4 }}
  securityContext:
    {{- include "emotion-serving.containerSecurityContext" (dict "values" dict) | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- with include "emotion-serving.s3.caMount" (dict "ctx" .ctx) }}{{ . | trim | nindent 4 }}{{ end }}
{{- end }}
