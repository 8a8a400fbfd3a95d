# A release on a real cluster (the current kube context), and the generated docs.
##@ Cluster

# Values files for `make up`, e.g. VALUES="examples/values/onprem-nfd-gpu.yaml my-overrides.yaml".
VALUES ?= examples/values/kind-cpu.yaml

.PHONY: up
up: ## helm upgrade --install RELEASE into NAMESPACE with VALUES; waits for the servers and the packager Job
	$(BIN)/helm upgrade --install $(RELEASE) charts/emotion-serving --namespace $(NAMESPACE) --create-namespace \
		$(addprefix --values ,$(VALUES)) --wait --wait-for-jobs --timeout 45m
	$(BIN)/helm test $(RELEASE) --namespace $(NAMESPACE) --logs

.PHONY: down
down: ## helm uninstall RELEASE (the bucket's PersistentVolumeClaim stays: delete it by hand to drop the models)
	$(BIN)/helm uninstall $(RELEASE) --namespace $(NAMESPACE) --wait

.PHONY: docs
docs: chart-docs ## Regenerate the generated documentation (the charts' README.md from their values)
