{{/*
The `helm test` pod (component "tests"): `loadtest smoke` sends labelled sentences to every enabled
server and checks the answers against the published package's reference outputs.
*/}}

{{/*
The servers the test reaches: those enabled, as a list.
*/}}
{{- define "emotion-serving.tests.servers" -}}
{{- range $server := keys (include "emotion-serving.servers" . | fromYaml) | sortAlpha }}
{{- if (get $.Values $server).enabled }}
- {{ $server }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The egress of a client of the servers (the helm test pod, the load-test Job): the S3 endpoint (the
package) and each enabled server's port of the protocol, or with "protocol" "any" every port of it
(gRPC, HTTP and metrics: the load test's protocol is chosen per run). (dict "ctx" $ "protocol" "grpc"|"http"|"any")
*/}}
{{- define "emotion-serving.clientEgress" -}}
{{- $ctx := .ctx -}}
{{- $ports := include "emotion-serving.ports" $ctx | fromYaml -}}
{{- $egress := include "emotion-serving.s3.egressRule" $ctx | fromYamlArray -}}
{{- range $server := include "emotion-serving.tests.servers" $ctx | fromYamlArray -}}
{{- $own := get $ports $server -}}
{{- $names := ternary (keys $own | sortAlpha) (list $.protocol) (eq $.protocol "any") -}}
{{- $wanted := list }}{{ range $names }}{{ $wanted = append $wanted (get $own .) }}{{ end -}}
{{- $to := list (dict "podSelector" (dict "matchLabels" (include "emotion-serving.selectorLabels" (dict "ctx" $ctx "component" $server) | fromYaml))) -}}
{{- $list := list }}{{ range $wanted }}{{ $list = append $list (dict "port" . "protocol" "TCP") }}{{ end -}}
{{- $egress = append $egress (dict "to" $to "ports" $list) -}}
{{- end -}}
{{- toYaml $egress -}}
{{- end }}

{{/*
`--target=NAME=HOST:PORT` of each enabled server, through its Service, on the protocol's port.
(dict "ctx" $ "protocol" "grpc"|"http")
*/}}
{{- define "emotion-serving.clientTargets" -}}
{{- $ctx := .ctx -}}
{{- $ports := include "emotion-serving.ports" $ctx | fromYaml -}}
{{- range include "emotion-serving.tests.servers" $ctx | fromYamlArray }}
- --target={{ . }}={{ include "emotion-serving.componentName" (dict "ctx" $ctx "component" .) }}.{{ $ctx.Release.Namespace }}.svc:{{ get (get $ports .) $.protocol }}
{{- end }}
{{- end }}

{{- define "emotion-serving.tests.pod" -}}
{{- $servers := include "emotion-serving.tests.servers" . | fromYamlArray }}
{{- $t := .Values.tests }}
{{- $tests := dict "ctx" . "component" "tests" "values" $t }}
{{- $ports := include "emotion-serving.ports" . | fromYaml }}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "emotion-serving.componentName" $tests }}
  labels:
    {{- include "emotion-serving.labels" $tests | nindent 4 }}
  annotations:
    helm.sh/hook: test
    # Kept after the run for `kubectl logs`; replaced by the next `helm test`.
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  {{- include "emotion-serving.podCommon" $tests | nindent 2 }}
  restartPolicy: Never
  containers:
    - name: loadtest
      {{- include "emotion-serving.packagerImage" . | nindent 6 }}
      command: ["loadtest"]
      args:
        {{- if $t.args }}
        {{- toYaml $t.args | nindent 8 }}
        {{- else }}
        # Labelled sentences to every enabled server; answers checked against the published package's reference.
        - smoke
        {{- include "emotion-serving.clientTargets" (dict "ctx" . "protocol" $t.protocol) | trim | nindent 8 }}
        - --protocol={{ $t.protocol }}
        - --name={{ .Values.global.model.name }}
        - --package=s3://{{ .Values.global.s3.bucket }}
        - --endpoint={{ include "emotion-serving.s3.endpoint" . }}
        {{- with include "emotion-serving.model.servedArg" . }}
        - {{ . }}
        {{- end }}
        {{- if not .Values.global.model.text }}
        - --input=tokens
        {{- end }}
        {{- end }}
      env:
        - name: AWS_REGION
          value: {{ .Values.global.s3.region | quote }}
        {{- include "emotion-serving.s3.credentialsEnv" (dict "ctx" . "access" "reader") | nindent 8 }}
        - name: HOME
          value: /tmp
        {{- if .Values.global.s3.ca.configMap }}
        - name: SSL_CERT_FILE
          value: {{ include "emotion-serving.s3.caFile" . }}
        {{- end }}
      resources:
        {{- toYaml $t.resources | nindent 8 }}
      securityContext:
        {{- include "emotion-serving.containerSecurityContext" $tests | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- with include "emotion-serving.s3.caMount" (dict "ctx" .) }}{{ . | trim | nindent 8 }}{{ end }}
  volumes:
    {{- include "emotion-serving.tmpVolume" (dict "sizeLimit" "256Mi") | nindent 4 }}
    {{- with include "emotion-serving.s3.caVolume" . }}{{ . | trim | nindent 4 }}{{ end }}
{{- end }}
