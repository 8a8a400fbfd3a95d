{{/*
What both inference servers (ovms, triton) render alike: the Deployment around their container, and
the ServiceAccount, Service, HPA, PDB and NetworkPolicy beside it. Each server's chart passes only
what differs: its arguments, environment, volumes and probe paths.
*/}}

{{/*
The Deployment. (dict "ctx" $ "component" NAME "values" .Values
  "command" LIST "args" LIST "env" YAML-LIST (may be empty) "volumes" YAML-LIST "volumeMounts" YAML-LIST
  "annotations" MAP (pod annotations besides values.podAnnotations)
  "resources" MAP (default values.resources)
  "readinessPath" PATH "startupPath" PATH (default /v2/health/ready; liveness is /v2/health/live: KServe v2 paths)
  "nodeSelector" MAP "tolerations" LIST (implied by the component, see emotion-serving.podCommon)
  "drainSeconds" N (how long the server itself drains after SIGTERM; the grace period must cover it)
  "kubeScoreIgnore" CHECKS (kube-score exceptions, with the reason at the caller))
*/}}
{{- define "emotion-serving.serverDeployment" -}}
{{- $values := .values -}}
{{- $drain := add $values.preStopSleepSeconds (.drainSeconds | default 0) -}}
{{- if le (int $values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "%s: terminationGracePeriodSeconds (%d) must exceed the preStop sleep plus the server's own drain (%d s)" .component (int $values.terminationGracePeriodSeconds) (int $drain)) }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "emotion-serving.componentName" . }}
  labels:
    {{- include "emotion-serving.labels" . | nindent 4 }}
  {{- with .kubeScoreIgnore }}
  annotations:
    kube-score/ignore: {{ . }}
  {{- end }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "emotion-serving.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      {{- toYaml $values.rollingUpdate | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "emotion-serving.labels" . | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with merge (deepCopy ($values.podAnnotations | default dict)) (.annotations | default dict) }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "emotion-serving.podCommon" . | nindent 6 }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      initContainers:
        {{- include "emotion-serving.fetchModel" . | nindent 8 }}
      containers:
        - name: {{ .component }}
          {{- include "emotion-serving.containerImage" (dict "ctx" .ctx "image" $values.image) | nindent 10 }}
          command:
            {{- toYaml .command | nindent 12 }}
          args:
            {{- toYaml (concat .args $values.extraArgs) | nindent 12 }}
          {{- if or (trim (.env | default "")) $values.extraEnv }}
          env:
            {{- with trim (.env | default "") }}{{ . | nindent 12 }}{{ end }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          ports:
            {{- include "emotion-serving.containerPorts" . | trim | nindent 12 }}
          {{- include "emotion-serving.httpProbes" (dict "probes" $values.probes "port" "http" "startup" (.startupPath | default "/v2/health/ready") "readiness" .readinessPath "liveness" "/v2/health/live") | trim | nindent 10 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $values.preStopSleepSeconds }}
          resources:
            {{- toYaml (.resources | default $values.resources) | nindent 12 }}
          securityContext:
            {{- include "emotion-serving.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- .volumeMounts | nindent 12 }}
            {{- with $values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "emotion-serving.tmpVolume" (dict "sizeLimit" $values.tmpSizeLimit) | nindent 8 }}
        {{- .volumes | nindent 8 }}
        {{- with $values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}

{{/*
ServiceAccount, Service, HPA, PDB and NetworkPolicy of a server: every port open to anyone, or, when
values.networkPolicy.ingressFrom is set, to those peers, the release's helm test pod and its load-test Job, with the
metrics scrapers (global.networkPolicy.metricsFrom) on "metricsPort"; egress to the S3 endpoint.
(dict "ctx" $ "component" NAME "values" .Values "metricsPort" NAME)
*/}}
{{- define "emotion-serving.serverObjects" -}}
{{- $ports := keys (get (include "emotion-serving.ports" .ctx | fromYaml) .component) | sortAlpha -}}
{{- $policy := dict "ingressPorts" $ports "egress" (include "emotion-serving.s3.egressRule" .ctx | fromYamlArray) -}}
{{- with .values.networkPolicy.ingressFrom }}
{{- $clients := list }}
{{- range list "tests" "loadtest" }}
{{- $clients = append $clients (dict "podSelector" (dict "matchLabels" (include "emotion-serving.selectorLabels" (dict "ctx" $.ctx "component" .) | fromYaml))) }}
{{- end }}
{{- $_ := set $policy "ingressFrom" (concat $clients .) }}
{{- $_ = set $policy "extraIngress" (include "emotion-serving.metricsIngress" (dict "ctx" $.ctx "port" (required "emotion-serving.serverObjects: metricsPort is required" $.metricsPort)) | fromYamlArray) }}
{{- end -}}
{{- include "emotion-serving.documents" (list
  (include "emotion-serving.serviceAccount" .)
  (include "emotion-serving.service" .)
  (include "emotion-serving.hpa" .)
  (include "emotion-serving.pdb" .)
  (include "emotion-serving.networkPolicy" (merge $policy .))) }}
{{- end }}
