{{/*
The in-cluster load test (component "loadtest"): a Job that `make loadtest` (`loadtest release`)
renders with the release's own values and applies, never helm install. It runs `loadtest run` next to
the servers, through their Services (the same client, inputs and levels for both), with the package
from the bucket, and keeps its report in the bucket (reports/<name>/<run>/, written once) for
`make loadtest` to fetch and for anyone without access to the pod. Writer credentials: the report is
written to the bucket; the models are only read.
*/}}
{{- define "emotion-serving.loadtest.job" -}}
{{- $l := .Values.loadtest }}
{{- $loadtest := dict "ctx" . "component" "loadtest" "values" $l }}
{{- $ports := include "emotion-serving.ports" . | fromYaml }}
{{- $servers := include "emotion-serving.servers" . | fromYaml }}
apiVersion: batch/v1
kind: Job
metadata:
  {{- /* The run's name is kept whole (the base is cut first): a Job per run, never two runs in one. */}}
  name: {{ printf "%s-%s" (include "emotion-serving.componentName" $loadtest | trunc (int (max 1 (sub 62 (len $l.run)))) | trimSuffix "-") $l.run | trunc 63 }}
  labels:
    {{- include "emotion-serving.labels" $loadtest | nindent 4 }}
  annotations:
    emotion-serving/run: {{ $l.run | quote }}
spec:
  # A failed run is a result (a threshold breached, a server down): never retried, so it is not repeated.
  backoffLimit: 0
  activeDeadlineSeconds: {{ $l.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ $l.ttlSecondsAfterFinished }}
  template:
    metadata:
      labels:
        {{- include "emotion-serving.selectorLabels" $loadtest | nindent 8 }}
      annotations:
        emotion-serving/run: {{ $l.run | quote }}
        {{- with $l.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "emotion-serving.podCommon" $loadtest | nindent 6 }}
      restartPolicy: Never
      containers:
        - name: loadtest
          {{- include "emotion-serving.packagerImage" . | nindent 10 }}
          command: ["loadtest"]
          args:
            - run
            {{- include "emotion-serving.clientTargets" (dict "ctx" . "protocol" $l.protocol) | trim | nindent 12 }}
            {{- range include "emotion-serving.tests.servers" . | fromYamlArray }}
            {{- $metrics := get $servers . }}
            - --metrics={{ . }}=http://{{ include "emotion-serving.componentName" (dict "ctx" $ "component" .) }}.{{ $.Release.Namespace }}.svc:{{ get (get $ports .) $metrics.metricsPort }}{{ $metrics.metricsPath }}
            {{- end }}
            - --protocol={{ $l.protocol }}
            - --name={{ .Values.global.model.name }}
            - --package=s3://{{ .Values.global.s3.bucket }}
            - --endpoint={{ include "emotion-serving.s3.endpoint" . }}
            {{- with include "emotion-serving.model.servedArg" . }}
            - {{ . }}
            {{- end }}
            {{- if .Values.global.s3.ca.configMap }}
            - --ca-bundle={{ include "emotion-serving.s3.caFile" . }}
            {{- end }}
            - --path=in-cluster
            - --keep-report={{ $l.run }}
            - --output=/tmp/report
            {{- with concat $l.args $l.extraArgs }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            - name: AWS_REGION
              value: {{ .Values.global.s3.region | quote }}
            {{- include "emotion-serving.s3.credentialsEnv" (dict "ctx" . "access" "writer") | nindent 12 }}
            - name: HOME
              value: /tmp
          resources:
            {{- toYaml $l.resources | nindent 12 }}
          securityContext:
            {{- include "emotion-serving.containerSecurityContext" $loadtest | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include "emotion-serving.s3.caMount" (dict "ctx" .) }}{{ . | trim | nindent 12 }}{{ end }}
      volumes:
        {{- include "emotion-serving.tmpVolume" (dict "sizeLimit" "1Gi") | nindent 8 }}
        {{- with include "emotion-serving.s3.caVolume" . }}{{ . | trim | nindent 8 }}{{ end }}
{{- end }}
