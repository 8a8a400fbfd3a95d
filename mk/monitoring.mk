# The monitoring subchart (charts/emotion-serving/charts/monitoring, docs/monitoring.md): promtool on the
# rendered rules, promtool unit tests of every alert and record, a check of every dashboard and autoscaling
# query. Its helm-unittest suites (charts/emotion-serving/tests/monitoring) run with the chart's
# (`make chart-unit`); its pytest tests (tests/monitoring: a real Prometheus scraping a real Triton, the
# Chart.lock digest, the wiring to the other subcharts) with `make test-python`.

##@ Monitoring

MONITORING_SUBCHART := charts/emotion-serving/charts/monitoring
# The chart the checks render: the umbrella, as users install it.
MONITORING_CHART ?= charts/emotion-serving
MONITORING_OUT := $(CACHE)/monitoring
# Built from tests/monitoring/promql-names (Prometheus's own PromQL parser, pinned in its go.mod).
PROMQL_NAMES := $(MONITORING_OUT)/bin/promql-names
# A scratch helm repository config, so `chart-deps` leaves the user's own alone.
MONITORING_HELM_REPOS := $(CACHE)/helm/repositories.yaml
MONITORING_STACK_REPO = $(shell awk '$$1 == "repository:" {print $$2; exit}' $(MONITORING_SUBCHART)/Chart.yaml)

TEST_SUITES += test-monitoring

.PHONY: chart-deps
chart-deps: ## Vendor kube-prometheus-stack (Chart.lock) into the monitoring subchart; needs network
	helm repo add prometheus-community $(MONITORING_STACK_REPO) --force-update \
		--repository-config $(MONITORING_HELM_REPOS) --repository-cache $(CACHE)/helm/cache
	helm dependency build $(MONITORING_SUBCHART) \
		--repository-config $(MONITORING_HELM_REPOS) --repository-cache $(CACHE)/helm/cache

.PHONY: test-monitoring
test-monitoring: test-monitoring-rules test-monitoring-queries ## Monitoring: promtool check + unit tests of the rules, dashboard and autoscaling queries

.PHONY: test-monitoring-rules
test-monitoring-rules: ## promtool check rules and promtool test rules on the rendered PrometheusRule; every alert and record tested
	rm -rf $(MONITORING_OUT)/rules && mkdir -p $(MONITORING_OUT)/rules
	$(PY) tests/monitoring/render.py rules $(MONITORING_OUT)/rules/rules.yaml --chart $(MONITORING_CHART)
	promtool check rules $(MONITORING_OUT)/rules/rules.yaml
	cp tests/monitoring/rules/*_test.yaml $(MONITORING_OUT)/rules/
	cd $(MONITORING_OUT)/rules && promtool test rules *_test.yaml
	$(PY) tests/monitoring/check.py coverage $(MONITORING_OUT)/rules/rules.yaml tests/monitoring/rules/*_test.yaml

.PHONY: test-monitoring-queries
test-monitoring-queries: $(PROMQL_NAMES) ## Every dashboard, rule and autoscaling query parses and selects only known metrics
	$(PY) tests/monitoring/check.py queries --names-tool $(PROMQL_NAMES) --chart $(MONITORING_CHART) \
		--set monitoring.autoscalingMetrics.enabled=true --series-from tests/monitoring/rules/*_test.yaml

$(PROMQL_NAMES): tests/monitoring/promql-names/main.go tests/monitoring/promql-names/go.mod tests/monitoring/promql-names/go.sum
	mkdir -p $(@D)
	cd tests/monitoring/promql-names && $(GO) build -o $(abspath $@) .

.PHONY: monitoring-unit
monitoring-unit: ## Only the monitoring subchart's helm-unittest suites (chart-unit runs them with the rest)
	helm-unittest --strict --file 'tests/monitoring/*_test.yaml' $(MONITORING_CHART)

.PHONY: monitoring-live
monitoring-live: ## Only the pytest tests of the monitoring (test-python runs them with the rest)
	$(PY) -m pytest tests/monitoring
