{{/*
Pod-level pieces shared by every workload of the tree (minio, ovms, triton, packager, tests).
They take (dict "ctx" $ "component" NAME "values" VALUES), where VALUES is the workload's block of
values (a subchart's .Values, or .Values.packager / .Values.tests), plus the optional keys named below.
*/}}

{{/*
Fields common to every pod spec: service account, pull secrets, priority, security context and
scheduling. Optional keys: "nodeSelector" (map) and "tolerations" (list) that the component implies
(Triton's GPU ones); values.nodeSelector wins key by key, values.tolerations are added.
*/}}
{{- define "emotion-serving.podCommon" -}}
serviceAccountName: {{ include "emotion-serving.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with (.values.imagePullSecrets | default .ctx.Values.global.imagePullSecrets) }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end }}
{{- with (.values.priorityClassName | default .ctx.Values.global.priorityClassName) }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- include "emotion-serving.podSecurityContext" . | nindent 2 }}
{{- with merge (deepCopy (.values.nodeSelector | default dict)) (.nodeSelector | default dict) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "emotion-serving.affinity" . | fromYaml }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with concat (.tolerations | default list) (.values.tolerations | default list) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- $constraint := deepCopy . }}
  {{- if not (hasKey $constraint "labelSelector") }}
  {{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "emotion-serving.selectorLabels" $ | fromYaml)) }}
  {{- end }}
  - {{- toYaml $constraint | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
values.affinity verbatim when set; else a required node affinity from values.requiredNodeAffinity
(matchExpressions, ANDed) and a pod anti-affinity per values.podAntiAffinity: "soft" (preferred) or
"hard" (required) spreading the component's pods over nodes, "none" for neither.
*/}}
{{- define "emotion-serving.affinity" -}}
{{- if .values.affinity -}}
{{- toYaml .values.affinity -}}
{{- else -}}
{{- $selector := dict "labelSelector" (dict "matchLabels" (include "emotion-serving.selectorLabels" . | fromYaml)) "topologyKey" "kubernetes.io/hostname" -}}
{{- with .values.requiredNodeAffinity }}
nodeAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    nodeSelectorTerms:
      - matchExpressions:
          {{- toYaml . | nindent 10 }}
{{- end }}
{{- if eq .values.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $selector | nindent 8 }}
{{- else if eq .values.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{- toYaml $selector | nindent 6 }}
{{- end }}
{{- end -}}
{{- end }}

{{/*
Pod security context: Pod Security "restricted" (non-root, RuntimeDefault seccomp) under
values.podSecurityContext, which sets the numeric user and group.
*/}}
{{- define "emotion-serving.podSecurityContext" -}}
{{- $restricted := dict "runAsNonRoot" true "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (mergeOverwrite $restricted (deepCopy (.values.podSecurityContext | default dict))) -}}
{{- end }}

{{/*
Container security context: Pod Security "restricted" (no privilege escalation, every capability
dropped) and a read-only root filesystem, under values.securityContext.
*/}}
{{- define "emotion-serving.containerSecurityContext" -}}
{{- $restricted := dict "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "runAsNonRoot" true "capabilities" (dict "drop" (list "ALL")) -}}
{{- toYaml (mergeOverwrite $restricted (deepCopy (.values.securityContext | default dict))) -}}
{{- end }}

{{/*
startup, readiness and liveness probes over HTTP. (dict "probes" VALUES.probes "port" NAME
"startup" PATH "readiness" PATH "liveness" PATH); each probe's timings come from values.
*/}}
{{- define "emotion-serving.httpProbes" -}}
{{- range $probe := list "startup" "readiness" "liveness" }}
{{ $probe }}Probe:
  httpGet:
    path: {{ get $ $probe }}
    port: {{ $.port }}
  {{- toYaml (get $.probes $probe) | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The /tmp emptyDir that every container with a read-only root mounts. (dict "sizeLimit" QUANTITY)
*/}}
{{- define "emotion-serving.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .sizeLimit }}
{{- end }}
