# The packager: its image and its benchmark. Its tests run in test-python (model-packager/tests).
##@ Packager

PACKAGER_IMAGE ?= emotion-serving-packager
PACKAGER_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' model-packager/pyproject.toml)
LINTERS += lint-docker

.PHONY: lint-docker
lint-docker: ## hadolint on Dockerfile.packager
	$(VENV)/bin/hadolint Dockerfile.packager

.PHONY: package
package: ## Build the packager and the fetch image (needs Docker) and package the chart into dist/
	@command -v docker >/dev/null || { echo "package: docker is not installed; the chart alone: helm package charts/emotion-serving -d dist" >&2; exit 1; }
	docker build -f Dockerfile.packager -t $(PACKAGER_IMAGE):$(PACKAGER_TAG) .
	docker build -f Dockerfile.packager --target fetch -t $(PACKAGER_IMAGE):$(PACKAGER_TAG)-fetch .
	$(BIN)/helm package charts/emotion-serving -d dist

.PHONY: bench-packager
bench-packager: ## Benchmark: build/publish time and peak RSS, backend latency and throughput on this CPU
	$(PY) bench/packager.py --work $(CACHE)/bench-packager
