# The load tester (load-tests/, docs/loadtest.md): its test suite, `make loadtest` against a deployed
# release, and the benchmark against ghz and vegeta.

##@ Load tester

GHZ_VERSION ?= v0.121.0
VEGETA_VERSION ?= v12.13.0
# `make loadtest` settings: the release to test, and the run's options (see `loadtest run --help`).
KUBECTL ?= kubectl
RELEASE ?= emotion-serving
NAMESPACE ?= default
LOADTEST_ARGS ?= --concurrency 1,4,16 --duration 30s --warmup 5s
LOADTEST_OUTPUT ?= $(CACHE)/loadtest/$(RELEASE)-$(shell date +%Y%m%d-%H%M%S)

$(eval $(call go-tool,ghz,github.com/bojand/ghz,$(GHZ_VERSION),cmd/ghz))
$(eval $(call go-tool,vegeta,github.com/tsenart/vegeta/v12,$(VEGETA_VERSION),.))

TEST_SUITES += test-loadtest

.PHONY: test-loadtest
test-loadtest: ## pytest: the load tester against a real local Triton
	$(PY) -m pytest load-tests/tests

.PHONY: bench-tools
bench-tools: $(call versioned,ghz,$(GHZ_VERSION)) $(call versioned,vegeta,$(VEGETA_VERSION)) ## ghz and vegeta at pinned versions (for bench-loadtest)
	@mkdir -p $(BIN)
	ln -sfn ../versions/ghz@$(GHZ_VERSION)/ghz $(BIN)/ghz
	ln -sfn ../versions/vegeta@$(VEGETA_VERSION)/vegeta $(BIN)/vegeta

.PHONY: bench-loadtest
bench-loadtest: bench-tools ## Benchmark: loadtest vs ghz (gRPC) and vegeta (HTTP) against a local Triton; prints ratios
	$(PY) load-tests/bench/bench.py --ghz $(BIN)/ghz --vegeta $(BIN)/vegeta

.PHONY: loadtest
loadtest: ## Load-test a deployed release (RELEASE, NAMESPACE, LOADTEST_ARGS) through kubectl port-forward; prints the report folder
	$(VENV)/bin/loadtest release --kubectl $(KUBECTL) --release $(RELEASE) --namespace $(NAMESPACE) --output $(LOADTEST_OUTPUT) -- $(LOADTEST_ARGS)
