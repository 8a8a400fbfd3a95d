{{/*
Helpers of the monitoring subchart. Labels and selectors come from the umbrella's
"emotion-serving.labels" and "emotion-serving.selectorLabels" (docs/contracts.md), so the
ServiceMonitors select exactly the Services the other subcharts create.
*/}}

{{/* Base name of this subchart's objects: <release>-monitoring, cut so a suffix still fits in 63. */}}
{{- define "monitoring.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one object: (dict "ctx" $ "suffix" "rules"). */}}
{{- define "monitoring.name" -}}
{{- printf "%s-%s" (include "monitoring.fullname" .ctx) .suffix -}}
{{- end -}}

{{/* Metadata labels of one object: the umbrella's full set for (dict "ctx" $ "component" ...). */}}
{{- define "monitoring.labels" -}}
{{- include "emotion-serving.labels" (dict "ctx" .ctx "component" (.component | default "monitoring")) -}}
{{- end -}}

{{/*
Labels that make a Prometheus pick up ServiceMonitors and PrometheusRules: kube-prometheus-stack
selects `release: <release name>` (REFERENCE.md); `prometheusSelectorLabels` adds to or overrides it.
Returned merged with the metadata labels, as YAML.
*/}}
{{- define "monitoring.selectedLabels" -}}
{{- $labels := include "monitoring.labels" . | fromYaml -}}
{{- $labels = merge (deepCopy .ctx.Values.prometheusSelectorLabels) (dict "release" .ctx.Release.Name) $labels -}}
{{- toYaml $labels -}}
{{- end -}}

{{/*
The models every server pod must have loaded, as a JSON list: rules.models when set, else what the
release publishes (global.model.name, and <name>-text with global.model.text). Read with fromJsonArray.
*/}}
{{- define "monitoring.models" -}}
{{- $models := .Values.rules.models -}}
{{- if not $models -}}
{{- $model := dig "model" dict (.Values.global | default dict) -}}
{{- $name := $model.name | default "emotion" -}}
{{- $models = list $name -}}
{{- if or (not (hasKey $model "text")) $model.text }}{{ $models = append $models (printf "%s-text" $name) }}{{ end -}}
{{- end -}}
{{- toJson $models -}}
{{- end -}}

{{/* The job label of a scraped server, as the ServiceMonitors set it and the rules select it. */}}
{{- define "monitoring.job" -}}
{{- printf "%s-%s" .ctx.Release.Name .component -}}
{{- end -}}

{{/* The label matchers of one server's series: (dict "ctx" $ "component" "ovms"). */}}
{{- define "monitoring.matchers" -}}
{{- printf "job=%q, namespace=%q" (include "monitoring.job" .) .ctx.Release.Namespace -}}
{{- end -}}

{{/* True when the Prometheus operator's CRDs are served (or come with the bundled stack). */}}
{{- define "monitoring.hasOperator" -}}
{{- if or (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") (hasKey .Subcharts "kube-prometheus-stack") -}}
true
{{- end -}}
{{- end -}}

{{/*
Fail early when the bundled stack is switched on but was never vendored: helm does not check a
nested subchart's dependencies, so without this the stack would silently not be installed.
*/}}
{{- define "monitoring.checkStack" -}}
{{- $stack := index .Values "kube-prometheus-stack" | default dict -}}
{{- if and $stack.enabled (not (hasKey .Subcharts "kube-prometheus-stack")) -}}
{{- fail "kube-prometheus-stack.enabled is true but the chart is not vendored: run `helm dependency build charts/emotion-serving/charts/monitoring` (or `make chart-deps`) first" -}}
{{- end -}}
{{- end -}}

{{/* `runbook_url` annotation line of an alert when alerts.runbookBaseURL is set: (dict "ctx" $ "alert" NAME). */}}
{{- define "monitoring.runbookURL" -}}
{{- with .ctx.Values.alerts.runbookBaseURL }}
        runbook_url: {{ printf "%s#%s" . (lower $.alert) | quote }}
{{- end -}}
{{- end -}}
