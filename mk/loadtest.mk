# The load tester (load-tests/, docs/loadtest.md): its test suite, `make loadtest` against a deployed
# release, and the benchmark against ghz and vegeta.

##@ Load tester

GHZ_VERSION ?= v0.121.0
VEGETA_VERSION ?= v12.13.0
# `make loadtest` settings: the run's options (see `loadtest run --help`); RELEASE and NAMESPACE are the Makefile's.
LOADTEST_ARGS ?= --concurrency 1,4,16 --duration 30s --warmup 5s
LOADTEST_OUTPUT ?= $(CACHE)/loadtest/$(RELEASE)-$(shell date +%Y%m%d-%H%M%S)

GHZ := $(call versioned,ghz,$(GHZ_VERSION))
VEGETA := $(call versioned,vegeta,$(VEGETA_VERSION))

# The suite is pytest: `make test` runs it with the rest (test-python); this target runs it alone.
.PHONY: test-loadtest
test-loadtest: ## Only the load tester's pytest suite, against a real local Triton (test-python runs it too)
	$(PY) -m pytest load-tests/tests

# Built like the setup's Go tools (hack/go-install.sh), but only on demand: the tests do not need them.
$(GHZ):
	hack/go-install.sh ghz github.com/bojand/ghz $(GHZ_VERSION) cmd/ghz
$(VEGETA):
	hack/go-install.sh vegeta github.com/tsenart/vegeta/v12 $(VEGETA_VERSION) .

.PHONY: bench-tools
bench-tools: $(GHZ) $(VEGETA) ## ghz and vegeta at pinned versions, from the Go module proxy (for bench-loadtest)
	@mkdir -p $(BIN)
	ln -sfn ../versions/ghz@$(GHZ_VERSION)/ghz $(BIN)/ghz
	ln -sfn ../versions/vegeta@$(VEGETA_VERSION)/vegeta $(BIN)/vegeta

.PHONY: bench-loadtest
bench-loadtest: bench-tools ## Benchmark: loadtest vs ghz (gRPC) and vegeta (HTTP) against a local Triton; prints ratios
	$(PY) load-tests/bench/bench.py --ghz $(BIN)/ghz --vegeta $(BIN)/vegeta

.PHONY: loadtest
loadtest: ## Load-test a deployed release (RELEASE, NAMESPACE, LOADTEST_ARGS) through kubectl port-forward; prints the report folder
	$(VENV)/bin/loadtest release --kubectl $(KUBECTL) --release $(RELEASE) --namespace $(NAMESPACE) --output $(LOADTEST_OUTPUT) -- $(LOADTEST_ARGS)
