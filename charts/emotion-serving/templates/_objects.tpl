{{/*
Whole objects that every component renders the same way: ServiceAccount, Service, HPA, PDB and
NetworkPolicy. They take (dict "ctx" $ "component" NAME "values" VALUES) like the pod pieces, and
render nothing when the values turn them off.
*/}}

{{/*
The service account a component's pods run as.
*/}}
{{- define "emotion-serving.serviceAccountName" -}}
{{- if .values.serviceAccount.create -}}
{{- .values.serviceAccount.name | default (include "emotion-serving.componentName" .) -}}
{{- else -}}
{{- .values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end }}

{{- define "emotion-serving.serviceAccount" -}}
{{- if .values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "emotion-serving.serviceAccountName" . }}
  labels:
    {{- include "emotion-serving.labels" . | nindent 4 }}
  {{- with .values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
# None of the pods talks to the Kubernetes API.
automountServiceAccountToken: false
{{- end }}
{{- end }}

{{/*
The component's Service: every port of emotion-serving.ports under its name. values.service.headless
makes it headless (clusterIP: None), for clients that balance gRPC over the pods themselves.
*/}}
{{- define "emotion-serving.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "emotion-serving.componentName" . }}
  labels:
    {{- include "emotion-serving.labels" . | nindent 4 }}
  {{- with .values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  {{- if .values.service.headless }}
  clusterIP: None
  {{- end }}
  selector:
    {{- include "emotion-serving.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $name, $port := get (include "emotion-serving.ports" .ctx | fromYaml) .component }}
    - name: {{ $name }}
      port: {{ $port }}
      targetPort: {{ $name }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/*
HorizontalPodAutoscaler (autoscaling/v2) on the component's Deployment: CPU utilisation and, when
values.autoscaling.customMetric.enabled, a per-pod custom metric served by a metrics adapter.
*/}}
{{- define "emotion-serving.hpa" -}}
{{- $autoscaling := .values.autoscaling -}}
{{- if $autoscaling.enabled }}
{{- if not (or $autoscaling.targetCPUUtilizationPercentage $autoscaling.customMetric.enabled) }}
{{- fail (printf "%s.autoscaling: set targetCPUUtilizationPercentage or enable customMetric" .component) }}
{{- end }}
{{- if gt (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas) }}
{{- fail (printf "%s.autoscaling: minReplicas (%d) is above maxReplicas (%d)" .component (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas)) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "emotion-serving.componentName" . }}
  labels:
    {{- include "emotion-serving.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "emotion-serving.componentName" . }}
  minReplicas: {{ $autoscaling.minReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    {{- with $autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $autoscaling.customMetric }}
    {{- if .enabled }}
    - type: Pods
      pods:
        metric:
          name: {{ .name | quote }}
        target:
          type: AverageValue
          averageValue: {{ .targetAverageValue | quote }}
    {{- end }}
    {{- end }}
  {{- with $autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
PodDisruptionBudget: values.pdb.minAvailable when set, else values.pdb.maxUnavailable.
*/}}
{{- define "emotion-serving.pdb" -}}
{{- $pdb := .values.pdb -}}
{{- if $pdb.enabled }}
{{- $min := $pdb.minAvailable -}}
{{- if and (kindIs "invalid" $min) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail (printf "%s.pdb: set minAvailable or maxUnavailable" .component) }}
{{- end }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "emotion-serving.componentName" . }}
  labels:
    {{- include "emotion-serving.labels" . | nindent 4 }}
spec:
  {{- if kindIs "invalid" $min }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- else }}
  minAvailable: {{ $min }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "emotion-serving.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/*
The ingress rule that admits the metrics scrapers (global.networkPolicy.metricsFrom) to the named
port, as a YAML list of at most one rule. (dict "ctx" $ "port" NAME)
*/}}
{{- define "emotion-serving.metricsIngress" -}}
{{- with .ctx.Values.global.networkPolicy.metricsFrom }}
- ports:
    - port: {{ $.port }}
      protocol: TCP
  from:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
Whether the component gets a NetworkPolicy: its own networkPolicy.enabled when true or false,
global.networkPolicy.enabled when null. Renders "true" or nothing.
*/}}
{{- define "emotion-serving.networkPolicyEnabled" -}}
{{- $enabled := .values.networkPolicy.enabled -}}
{{- if kindIs "invalid" $enabled }}{{ $enabled = .ctx.Values.global.networkPolicy.enabled }}{{ end -}}
{{- if $enabled }}true{{ end -}}
{{- end }}

{{/*
NetworkPolicy for the component's pods. Ingress: the ports named in "ingressPorts" (list), from the
peers in "ingressFrom" (list; none: from anywhere), and the rules in "extraIngress" (list). Egress:
DNS, the rules in "egress" (list) that the component needs, and values.networkPolicy.extraEgress.
*/}}
{{- define "emotion-serving.networkPolicy" -}}
{{- if include "emotion-serving.networkPolicyEnabled" . }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "emotion-serving.componentName" . }}
  labels:
    {{- include "emotion-serving.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "emotion-serving.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  {{- if .ingressPorts }}
  ingress:
    - ports:
        {{- range .ingressPorts }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with .ingressFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- with .extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- else }}
  ingress: []
  {{- end }}
  egress:
    # DNS, wherever the cluster runs it.
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- with concat (.egress | default list) (.values.networkPolicy.extraEgress | default list) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}
