# The Helm charts (charts/emotion-serving, its README "Chart" section): generated files, lint, unit
# tests, manifest validation for several Kubernetes versions, policy scan, helm 3 vs helm 4. Offline.

##@ Charts

CHART := charts/emotion-serving
CHART_OUT := $(CACHE)/charts
CHART_RELEASE := emotion
CHART_NAMESPACE := emotion
# Every chart-testing scenario and every per-cluster example is rendered, validated and scanned.
CHART_SCENARIOS := $(sort $(wildcard $(CHART)/ci/*-values.yaml)) $(sort $(wildcard examples/values/*.yaml))
# The monitoring subchart's custom resources render only where their API is served: say it is.
CHART_TEMPLATE = template $(CHART_RELEASE) $(CHART) --namespace $(CHART_NAMESPACE) --api-versions monitoring.coreos.com/v1
# ci/default-values.yaml -> ci-default, examples/values/kind-cpu.yaml -> example-kind-cpu
chart_scenario = $(if $(findstring /ci/,$(1)),ci-$(notdir $(1:-values.yaml=)),example-$(notdir $(1:.yaml=)))
HELM_DOCS_ARGS := --chart-search-root charts --chart-to-generate $(CHART) --document-dependency-values \
	--skip-version-footer --log-level warning
KUBECONFORM_ARGS := -strict -summary -schema-location $(TOOLS)/schemas \
	-schema-location '$(TOOLS)/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'
# kube-score: the default checks plus two optional ones, warnings fail too. Exceptions, each with its reason:
# - container-image-pull-policy (wants Always): the images are pinned by tag (and digest when set); Always
#   would make every pod start depend on the registry and break `kind load`ed images.
# - the OVMS and Triton Deployments carry `kube-score/ignore` annotations in their templates: their
#   images' fixed users (uid 5000 and 1000, below kube-score's 10000), and Triton's single GPU replica.
KUBE_SCORE_ARGS := --output-format ci --exit-one-on-warning --ignore-test container-image-pull-policy \
	--enable-optional-test container-seccomp-profile --enable-optional-test container-ports-check
# - examples/values/kind-cpu.yaml runs one OVMS replica: a single-node laptop cluster has room for one.
kube_score_extra = $(if $(filter example-kind-cpu,$(1)),--min-replicas-deployment 1)

LINTERS += lint-charts
TEST_SUITES += test-charts

.PHONY: chart-schemas
chart-schemas: ## Build the charts' values.schema.json from charts/emotion-serving/schema/*.yaml
	$(PY) hack/charts.py schema

.PHONY: chart-docs
chart-docs: ## Regenerate charts/emotion-serving/README.md from README.md.gotmpl and the values (helm-docs)
	helm-docs $(HELM_DOCS_ARGS)

.PHONY: lint-charts
lint-charts: ## Charts: schemas and README current, every value documented, helm lint --strict, ct lint
	@mkdir -p $(CHART_OUT)
	$(PY) hack/charts.py schema --check
	helm-docs $(HELM_DOCS_ARGS) --dry-run > $(CHART_OUT)/README.md
	diff -u $(CHART)/README.md $(CHART_OUT)/README.md || { echo "lint-charts: README.md is stale, run make chart-docs" >&2; exit 1; }
	$(PY) hack/charts.py docs $(CHART)/README.md
	for values in $(CHART_SCENARIOS); do helm lint --strict --quiet $(CHART) --values $$values || exit 1; done
	ct lint --config ct.yaml

.PHONY: test-charts
test-charts: chart-unit chart-manifests chart-score chart-restricted chart-helm4 chart-contract ## Charts: unit tests, kubeconform, kube-score, Pod Security, helm 3 vs 4, packager contract

.PHONY: chart-unit
chart-unit: ## helm-unittest suites of the chart (tests/**/*_test.yaml)
	helm-unittest --strict --file 'tests/**/*_test.yaml' $(CHART)

# Renders of every scenario for every Kubernetes version (helm 3) and for the newest (helm 4).
.PHONY: chart-render
chart-render:
	@rm -rf $(CHART_OUT)/render && mkdir -p $(CHART_OUT)/render
	@$(foreach values,$(CHART_SCENARIOS),\
		$(foreach version,$(KUBE_VERSIONS),\
			helm $(CHART_TEMPLATE) --values $(values) --kube-version $(version) \
				> $(CHART_OUT)/render/$(call chart_scenario,$(values))@$(version).yaml &&) \
		helm4 $(CHART_TEMPLATE) --values $(values) --kube-version $(lastword $(KUBE_VERSIONS)) \
			> $(CHART_OUT)/render/$(call chart_scenario,$(values))@helm4.yaml &&) true
	@echo "chart-render: $(words $(CHART_SCENARIOS)) scenarios x $(words $(KUBE_VERSIONS)) Kubernetes versions ($(KUBE_VERSIONS)), and helm 4"

.PHONY: chart-manifests
chart-manifests: chart-render ## kubeconform -strict: every scenario for each of KUBE_VERSIONS, schemas on disk; an unknown field must fail
	$(foreach version,$(KUBE_VERSIONS),\
		kubeconform $(KUBECONFORM_ARGS) -kubernetes-version $(version) $(CHART_OUT)/render/*@$(version).yaml &&) true
	# The check can fail: a misspelt field in an extraEnv entry passes the values schema (EnvVar objects
	# are the API's to check) and must be refused here.
	helm $(CHART_TEMPLATE) --set ovms.extraEnv[0].name=PROBE --set ovms.extraEnv[0].valuee=x > $(CHART_OUT)/unknown-field.yaml
	! kubeconform $(KUBECONFORM_ARGS) -kubernetes-version $(firstword $(KUBE_VERSIONS)) $(CHART_OUT)/unknown-field.yaml > $(CHART_OUT)/unknown-field.log
	grep -q "valuee" $(CHART_OUT)/unknown-field.log
	@echo "chart-manifests: an unknown field is refused: $$(grep -o "additional properties 'valuee' not allowed" $(CHART_OUT)/unknown-field.log | head -1)"

.PHONY: chart-score
chart-score: chart-render ## kube-score on every scenario: zero findings beyond the exceptions above
	$(foreach values,$(CHART_SCENARIOS),\
		kube-score score $(KUBE_SCORE_ARGS) $(call kube_score_extra,$(call chart_scenario,$(values))) \
			$(CHART_OUT)/render/$(call chart_scenario,$(values))@$(lastword $(KUBE_VERSIONS)).yaml \
			| { grep -v -e '^\[OK\]' -e '^\[SKIPPED\]' || true; } &&) true
	@echo "chart-score: $(words $(CHART_SCENARIOS)) scenarios, no findings"

.PHONY: chart-restricted
chart-restricted: chart-render ## Every pod of every scenario meets Pod Security Standards "restricted"
	$(PY) hack/charts.py restricted $(CHART_OUT)/render/*@$(lastword $(KUBE_VERSIONS)).yaml

.PHONY: chart-helm4
chart-helm4: chart-render ## helm 3 and helm 4 render the same objects for every scenario
	$(foreach values,$(CHART_SCENARIOS),\
		$(PY) hack/charts.py compare $(CHART_OUT)/render/$(call chart_scenario,$(values))@$(lastword $(KUBE_VERSIONS)).yaml \
			$(CHART_OUT)/render/$(call chart_scenario,$(values))@helm4.yaml &&) true

.PHONY: chart-contract
chart-contract: chart-render ## The packager Job fails at once on exactly model-packager's permanent exit codes
	$(PY) hack/charts.py exit-codes $(CHART_OUT)/render/ci-default@$(lastword $(KUBE_VERSIONS)).yaml
