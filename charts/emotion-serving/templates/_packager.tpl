{{/*
The packager Job's pieces (component "packager"). The Job runs `model-packager run` (build, verify,
publish; docs/contracts.md); the servers' initContainers wait for what it publishes.
*/}}

{{/*
Exit codes on which the Job fails at once instead of retrying: bad input, parity gate, credentials
refused, conflict (model-packager errors.py PERMANENT; `make chart-contract` compares the two).
*/}}
{{- define "emotion-serving.packager.permanentExitCodes" -}}
[3, 4, 5, 8]
{{- end }}

{{- define "emotion-serving.packager.args" -}}
{{- $g := .Values.global -}}
- run
{{ include "emotion-serving.packager.modelArgs" . }}
{{- /* The model request: a run of one already recorded neither resolves the revision on the hub nor builds. */}}
- --request={{ include "emotion-serving.model.request" . }}
{{- with $g.model.retention.versions }}
- --keep-versions={{ . }}
{{- end }}
{{- range compact (prepend $g.model.retention.keep $g.model.version) | uniq }}
- --keep={{ . }}
{{- end }}
- --endpoint={{ include "emotion-serving.s3.endpoint" . }}
- --bucket={{ $g.s3.bucket }}
- --work-dir=/work
{{- if $g.s3.ca.configMap }}
- --ca-bundle={{ include "emotion-serving.s3.caFile" . }}
{{- end }}
{{- end }}

{{/*
The `run` arguments that shape the build: what the model request hashes. Anything else (endpoint,
retention, resources, image) changes nothing the request was published as. They are global.model's
only, so that every chart of the release (the servers' fetch-model initContainers) names the same
request.
*/}}
{{- define "emotion-serving.packager.modelArgs" -}}
{{- $m := .Values.global.model -}}
- --model={{ $m.source }}
{{- with $m.revision }}
- --revision={{ . }}
{{- end }}
- --name={{ $m.name }}
- --max-length={{ $m.maxLength }}
- --precision={{ $m.precision }}
{{- /* The parity gate compiles the IR as OVMS runs it: its INFERENCE_PRECISION_HINT, or the CPU's own when empty. */}}
- --inference-precision={{ $m.inferencePrecisionHint | default "default" }}
- --activation={{ $m.activation }}
- --triton-device={{ $m.tritonDevice }}
- --tensorrt={{ $m.tensorrt }}
- --max-batch-size={{ $m.maxBatchSize }}
- --text={{ ternary "on" "off" $m.text }}
{{- with $m.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The model request: 16 hex of the sha256 of the model arguments. The Job records the version it
published for it (manifests/<name>/requests/<R>.json); an unpinned server pod fetches that version.
*/}}
{{- define "emotion-serving.model.request" -}}
{{- include "emotion-serving.packager.modelArgs" . | sha256sum | trunc 16 -}}
{{- end }}

{{/*
Which version a pod serves or checks, as the argument of `model-packager fetch`, `loadtest smoke`
and `loadtest run`: `--version=N` when pinned (global.model.version), else `--request=R` when the
release's own packager publishes, else nothing (READY's). The one rule for the servers, the helm test
and the load test, so that the clients check what the servers serve. (any chart's context)
*/}}
{{- define "emotion-serving.model.servedArg" -}}
{{- $g := .Values.global -}}
{{- if $g.model.version -}}
--version={{ $g.model.version }}
{{- else if $g.packager.enabled -}}
--request={{ include "emotion-serving.model.request" . }}
{{- end -}}
{{- end }}

{{/*
With the bundled MinIO, an initContainer waits until the writer's credentials list the bucket (MinIO's
pod turns Ready once its setup container made both), so the packager does not spend its own retries
on a MinIO that is still starting.
*/}}
{{- define "emotion-serving.packager.waitForBucket" -}}
- name: wait-for-bucket
  {{- include "emotion-serving.containerImage" (dict "ctx" . "image" .Values.minio.image) | nindent 2 }}
  command:
    - sh
    - -c
    - |
      deadline=$(( $(date +%s) + TIMEOUT_SECONDS ))
      until mc alias set s3 "$ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null && mc ls "s3/$BUCKET" >/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
          echo "wait-for-bucket: bucket $BUCKET at $ENDPOINT not writable within ${TIMEOUT_SECONDS}s" >&2
          exit 1
        fi
        sleep 3
      done
  env:
    - name: ENDPOINT
      value: {{ include "emotion-serving.s3.endpoint" . | quote }}
    - name: BUCKET
      value: {{ .Values.global.s3.bucket | quote }}
    - name: TIMEOUT_SECONDS
      value: {{ .Values.packager.bucketWaitTimeoutSeconds | quote }}
    - name: MC_CONFIG_DIR
      value: /tmp/mc
    {{- include "emotion-serving.s3.credentialsEnv" (dict "ctx" . "access" "writer") | nindent 4 }}
  resources:
    {{- toYaml .Values.global.wait.resources | nindent 4 }}
  securityContext:
    {{- include "emotion-serving.containerSecurityContext" (dict "values" dict) | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/*
The Job's pod template. Its text is part of the Job's name (emotion-serving.jobName), so it holds the
selector labels only: a new chart version alone does not start a new Job.
*/}}
{{- define "emotion-serving.packager.pod" -}}
{{- $p := .Values.packager -}}
{{- $packager := dict "ctx" . "component" "packager" "values" $p -}}
metadata:
  labels:
    {{- include "emotion-serving.selectorLabels" $packager | nindent 4 }}
    {{- with $p.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $p.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- include "emotion-serving.podCommon" $packager | nindent 2 }}
  restartPolicy: Never
  {{- if .Values.minio.enabled }}
  initContainers:
    {{- include "emotion-serving.packager.waitForBucket" . | nindent 4 }}
  {{- end }}
  containers:
    - name: packager
      {{- include "emotion-serving.packagerImage" . | nindent 6 }}
      command: ["model-packager"]
      args:
        {{- include "emotion-serving.packager.args" . | nindent 8 }}
      env:
        - name: AWS_REGION
          value: {{ .Values.global.s3.region | quote }}
        {{- include "emotion-serving.s3.credentialsEnv" (dict "ctx" . "access" "writer") | nindent 8 }}
        - name: HF_HOME
          value: /cache/huggingface
        # Libraries that cache under $HOME write to the /tmp emptyDir (the root filesystem is read-only).
        - name: HOME
          value: /tmp
        {{- with $p.hfToken.existingSecret }}
        - name: HF_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: {{ $p.hfToken.key }}
        {{- end }}
        {{- with $p.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml $p.resources | nindent 8 }}
      securityContext:
        {{- include "emotion-serving.containerSecurityContext" $packager | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: cache
          mountPath: /cache
        - name: work
          mountPath: /work
        {{- with include "emotion-serving.s3.caMount" (dict "ctx" .) }}{{ . | trim | nindent 8 }}{{ end }}
        {{- with $p.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    {{- include "emotion-serving.tmpVolume" (dict "sizeLimit" "1Gi") | nindent 4 }}
    - name: cache
      emptyDir:
        sizeLimit: {{ $p.cacheSizeLimit }}
    - name: work
      emptyDir:
        sizeLimit: {{ $p.workSizeLimit }}
    {{- with include "emotion-serving.s3.caVolume" . }}{{ . | trim | nindent 4 }}{{ end }}
    {{- with $p.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The parts of the Job's spec that Kubernetes refuses to change on an existing Job (its Job validation,
ValidateJobSpecUpdate: template, selector, completions, completionMode, podFailurePolicy,
backoffLimitPerIndex, managedBy, successPolicy). The chart sets the pod template and the failure
policy; the others keep the API's defaults. Their text names the Job (emotion-serving.jobName).
*/}}
{{- define "emotion-serving.packager.immutableSpec" -}}
podFailurePolicy:
  rules:
    # A retry cannot fix these: bad input, parity gate failed, credentials refused, conflict.
    - action: FailJob
      onExitCodes:
        containerName: packager
        operator: In
        values: {{ include "emotion-serving.packager.permanentExitCodes" . }}
    # A drained or preempted node is not the packager's failure: such a pod does not count.
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
    # Any other exit of the packager may pass on a retry: a new pod, after the Job's back-off (10 s,
    # doubling up to 6 min), until activeDeadlineSeconds. Not counted, so that backoffLimit can be 0:
    # helm 3 takes a Job for failed only when status.failed exceeds backoffLimit, and a FailJob above
    # leaves status.failed at 1 (with a larger backoffLimit, `helm install --wait-for-jobs` would wait
    # out its --timeout).
    - action: Ignore
      onExitCodes:
        containerName: packager
        operator: NotIn
        values: {{ include "emotion-serving.packager.permanentExitCodes" . }}
template:
  {{- include "emotion-serving.packager.pod" . | nindent 2 }}
{{- end }}

{{/*
The Job. Its name carries a hash of the immutable part of its spec (emotion-serving.jobName); the
fields above it may change in place.
*/}}
{{- define "emotion-serving.packager.job" -}}
{{- $p := .Values.packager }}
{{- $packager := dict "ctx" . "component" "packager" "values" $p }}
{{- $immutable := include "emotion-serving.packager.immutableSpec" . }}
apiVersion: batch/v1
kind: Job
metadata:
  # A changed model spec (or image, pod setting or failure policy) is a new Job: those fields are immutable.
  name: {{ include "emotion-serving.jobName" (dict "ctx" . "component" "packager" "spec" $immutable) }}
  labels:
    {{- include "emotion-serving.labels" $packager | nindent 4 }}
  annotations:
    emotion-serving/model: {{ printf "%s@%s" .Values.global.model.source (.Values.global.model.revision | default "default") | quote }}
    emotion-serving/request: {{ include "emotion-serving.model.request" . | quote }}
spec:
  backoffLimit: {{ $p.backoffLimit }}
  activeDeadlineSeconds: {{ $p.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ $p.ttlSecondsAfterFinished }}
  {{- $immutable | nindent 2 }}
{{- end }}
