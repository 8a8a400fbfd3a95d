{{/*
MinIO's own named templates. Names and labels come from the umbrella (emotion-serving.*).
*/}}

{{/*
Secret of the root credentials: minio.auth.existingSecret, or the generated one.
*/}}
{{- define "emotion-serving.minio.rootSecretName" -}}
{{- .Values.auth.existingSecret | default (include "emotion-serving.componentName" (dict "ctx" . "component" "minio-root")) -}}
{{- end }}

{{/*
The Secrets of generated credentials, as a YAML list of {name, keys: {KEY: LENGTH}}: the root
one unless auth.existingSecret is set, and the reader's and the writer's unless global.s3 names
existing ones. One list for both ways of generating them (auth.generatedBy).
*/}}
{{- define "emotion-serving.minio.generatedSecrets" -}}
{{- $s3 := .Values.global.s3 -}}
{{- $secrets := list -}}
{{- if not .Values.auth.existingSecret -}}
{{- $secrets = append $secrets (dict "name" (include "emotion-serving.minio.rootSecretName" .)
  "keys" (dict .Values.auth.rootUserKey 16 .Values.auth.rootPasswordKey 40)) -}}
{{- end -}}
{{- range $access, $existing := dict "reader" $s3.existingSecret "writer" $s3.writerExistingSecret -}}
{{- if not $existing -}}
{{- $secrets = append $secrets (dict "name" (include "emotion-serving.s3.secretName" (dict "ctx" $ "access" $access))
  "keys" (dict $s3.accessKeyIdKey 20 $s3.secretAccessKeyKey 40)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $secrets -}}
{{- end }}

{{/*
A Secret of random alphanumeric values, generated once: an existing Secret of the same name keeps
its values (lookup), so upgrades change nothing. `helm template` has no cluster and generates anew.
(dict "ctx" $ "name" NAME "keys" (dict KEY LENGTH ...))
*/}}
{{- define "emotion-serving.minio.generatedSecret" -}}
{{- $existing := (lookup "v1" "Secret" .ctx.Release.Namespace .name).data | default dict -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .name }}
  labels:
    {{- include "emotion-serving.labels" (dict "ctx" .ctx "component" "minio") | nindent 4 }}
  annotations:
    emotion-serving/generated: "true"
    # MinIO's data on the volume and the users its setup made stay bound to these credentials: keep
    # them as long as the volume. Kept, a switch to auth.generatedBy=job finds them in place (its
    # hook keeps what exists) instead of helm deleting the keys every pod reads.
    helm.sh/resource-policy: keep
type: Opaque
data:
  {{- range $key, $length := .keys }}
  {{ $key }}: {{ get $existing $key | default (randAlphaNum (int $length) | b64enc) | quote }}
  {{- end }}
{{- end }}

{{/*
The two bucket policies: reader (the servers: list and get) and writer (the packager: also put and
multipart uploads, listing and aborting the unfinished ones a killed run left). A publish only adds
objects; with retention on (global.model.retention.versions) the writer may also delete, and only
under the model's own folders: its version folders on both servers and its manifests.
(dict "bucket" NAME "access" "reader"|"writer" "model" (global.model))
*/}}
{{- define "emotion-serving.minio.policy" -}}
{{- $bucketActions := list "s3:GetBucketLocation" "s3:ListBucket" -}}
{{- $objectActions := list "s3:GetObject" -}}
{{- if eq .access "writer" -}}
{{- $bucketActions = append $bucketActions "s3:ListBucketMultipartUploads" -}}
{{- $objectActions = concat $objectActions (list "s3:PutObject" "s3:AbortMultipartUpload" "s3:ListMultipartUploadParts") -}}
{{- end -}}
{{- $arn := printf "arn:aws:s3:::%s" .bucket -}}
{{- $statements := list
  (dict "Effect" "Allow" "Action" $bucketActions "Resource" (list $arn))
  (dict "Effect" "Allow" "Action" $objectActions "Resource" (list (printf "%s/*" $arn))) -}}
{{- if and (eq .access "writer") .model.retention.versions -}}
{{- $name := .model.name -}}
{{- $folders := list (printf "ovms/%s" $name) (printf "ovms/%s-text" $name) (printf "triton/%s" $name) (printf "triton/%s-tokenizer" $name) (printf "triton/%s-text" $name) (printf "manifests/%s" $name) -}}
{{- $resources := list -}}
{{- range $folders }}{{ $resources = append $resources (printf "%s/%s/*" $arn .) }}{{ end -}}
{{- $statements = append $statements (dict "Effect" "Allow" "Action" (list "s3:DeleteObject") "Resource" $resources) -}}
{{- end -}}
{{- toPrettyJson (dict "Version" "2012-10-17" "Statement" $statements) -}}
{{- end }}

{{/*
The setup container's files: its script and the two policies. The script waits for MinIO on
localhost, makes the bucket, the policies and the two users (every step idempotent: it runs again
whenever the pod starts), marks itself done for its readiness probe, and idles. MinIO's pod is Ready,
and its Service routes, only once the users exist: a client never sees refused credentials that a
moment later would have worked.
*/}}
{{- define "emotion-serving.minio.setupConfig" -}}
setup.sh: |
  set -eu
  rm -f /tmp/setup-done
  deadline=$(( $(date +%s) + TIMEOUT_SECONDS ))
  until mc alias set root "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "minio-setup: MinIO at $MINIO_ENDPOINT did not answer within ${TIMEOUT_SECONDS}s" >&2
      exit 1
    fi
    sleep 3
  done
  mc mb --ignore-existing "root/$BUCKET"
  setup_user() { # policy, access key, secret key
    mc admin policy create root "$1" "/setup/$1.json"
    mc admin user add root "$2" "$3"
    case "$(mc admin user info root "$2" --json)" in
      *"$1"*) ;;
      *) mc admin policy attach root "$1" --user "$2" ;;
    esac
  }
  setup_user emotion-serving-reader "$READER_ACCESS_KEY_ID" "$READER_SECRET_ACCESS_KEY"
  setup_user emotion-serving-writer "$WRITER_ACCESS_KEY_ID" "$WRITER_SECRET_ACCESS_KEY"
  echo "minio-setup: bucket $BUCKET ready, with a reader and a writer user"
  touch /tmp/setup-done
  exec sleep infinity
{{- range $access := list "reader" "writer" }}
emotion-serving-{{ $access }}.json: |
  {{- include "emotion-serving.minio.policy" (dict "bucket" $.Values.global.s3.bucket "access" $access "model" $.Values.global.model) | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The setup container, beside MinIO in its pod. (the top-level context)
*/}}
{{- define "emotion-serving.minio.setupContainer" -}}
{{- $s3 := .Values.global.s3 -}}
{{- $root := include "emotion-serving.minio.rootSecretName" . -}}
- name: setup
  {{- include "emotion-serving.containerImage" (dict "ctx" . "image" .Values.image) | nindent 2 }}
  command: ["sh", "/setup/setup.sh"]
  env:
    - name: MINIO_ENDPOINT
      value: {{ printf "http://127.0.0.1:%v" (include "emotion-serving.ports" . | fromYaml).minio.api | quote }}
    - name: BUCKET
      value: {{ $s3.bucket | quote }}
    - name: TIMEOUT_SECONDS
      value: {{ .Values.setup.timeoutSeconds | quote }}
    - name: MC_CONFIG_DIR
      value: /tmp/mc
    - name: MINIO_ROOT_USER
      valueFrom:
        secretKeyRef:
          name: {{ $root }}
          key: {{ .Values.auth.rootUserKey }}
    - name: MINIO_ROOT_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $root }}
          key: {{ .Values.auth.rootPasswordKey }}
    {{- range $access := list "reader" "writer" }}
    {{- $secret := include "emotion-serving.s3.secretName" (dict "ctx" $ "access" $access) }}
    - name: {{ upper $access }}_ACCESS_KEY_ID
      valueFrom:
        secretKeyRef:
          name: {{ $secret }}
          key: {{ $s3.accessKeyIdKey }}
    - name: {{ upper $access }}_SECRET_ACCESS_KEY
      valueFrom:
        secretKeyRef:
          name: {{ $secret }}
          key: {{ $s3.secretAccessKeyKey }}
    {{- end }}
  readinessProbe:
    exec:
      command: ["cat", "/tmp/setup-done"]
    periodSeconds: 5
  resources:
    {{- toYaml .Values.setup.resources | nindent 4 }}
  securityContext:
    {{- include "emotion-serving.containerSecurityContext" (dict "values" .Values) | nindent 4 }}
  volumeMounts:
    - name: setup
      mountPath: /setup
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
