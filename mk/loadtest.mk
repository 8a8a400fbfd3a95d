# The load tester (load-tests/, docs/loadtest.md): its compiled engine, its test suite, `make loadtest`
# against a deployed release, and the benchmark against perf_analyzer, ghz and vegeta.

##@ Load tester

GHZ_VERSION ?= v0.121.0
VEGETA_VERSION ?= v12.13.0
# `make loadtest` settings: the run's options (see `loadtest run --help`) replacing the release's for one run;
# RELEASE and NAMESPACE are the Makefile's.
# Empty: the release's loadtest.args (the chart's default levels, or the release's own).
LOADTEST_ARGS ?=
# in-cluster: the chart's load-test Job next to the servers, its report fetched from the bucket;
# port-forward: the tester here, tunnelled through the API server (the report says so).
LOADTEST_MODE ?= in-cluster
LOADTEST_OUTPUT ?= $(CACHE)/loadtest/$(RELEASE)-$(shell date +%Y%m%d-%H%M%S)
# `make bench-loadtest` settings: load-tests/bench/bench.py's options (e.g. --rounds 2 --duration 10).
BENCH_ARGS ?=

# perf_analyzer, Triton's own load generator: the last tritonclient wheel that ships it, and the CUDA runtime
# it links even on CPU (libb64 comes from Debian: BENCH_APT_PACKAGES).
PERF_ANALYZER_WHEEL_VERSION ?= 2.41.0
CUDA_RUNTIME_WHEEL_VERSION ?= 12.4.127
BENCH_APT_PACKAGES ?= libb64-0d

# The engine (load-tests/engine, Go): its module's go.sum pins every dependency; the binary is named by a
# digest of its sources, so an edit builds a new one. `make setup` builds it (the prerequisite below).
ENGINE_SOURCES := $(sort $(wildcard load-tests/engine/*.go)) load-tests/engine/go.mod load-tests/engine/go.sum
ENGINE_DIGEST := $(shell cat $(ENGINE_SOURCES) | sha256sum | cut -c1-12)
ENGINE := $(call versioned,loadtest-engine,$(ENGINE_DIGEST))
PERF_ANALYZER := $(TOOLS)/perf_analyzer/$(PERF_ANALYZER_WHEEL_VERSION)/.installed

GHZ := $(call versioned,ghz,$(GHZ_VERSION))
VEGETA := $(call versioned,vegeta,$(VEGETA_VERSION))

setup: loadtest-engine

.PHONY: loadtest-engine
loadtest-engine: $(ENGINE) ## The load tester's compiled engine (Go, load-tests/engine) into .tools (make setup builds it)
	@mkdir -p $(BIN)
	ln -sfn ../versions/loadtest-engine@$(ENGINE_DIGEST)/loadtest-engine $(BIN)/loadtest-engine

$(ENGINE): $(ENGINE_SOURCES)
	@mkdir -p $(@D)
	cd load-tests/engine && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o $(abspath $@).tmp .
	mv $@.tmp $@

# The engine's Go unit tests and linters join `make test` and `make lint`.
TEST_SUITES += test-engine
LINTERS += lint-engine

.PHONY: test-engine
test-engine: ## The load engine's Go unit tests (parsers, recorder, its HTTP/2 client against grpc-go's server)
	cd load-tests/engine && GOFLAGS=-mod=readonly go test ./...

.PHONY: lint-engine
lint-engine: ## gofmt and go vet on the load engine
	@unformatted=$$(gofmt -l load-tests/engine); [ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted"; exit 1; }
	cd load-tests/engine && GOFLAGS=-mod=readonly go vet ./...

# The suite is pytest: `make test` runs it with the rest (test-python); this target runs it alone.
.PHONY: test-loadtest
test-loadtest: loadtest-engine ## Only the load tester's pytest suite, against a real local Triton (test-python runs it too)
	$(PY) -m pytest load-tests/tests

# Built like the setup's Go tools (hack/go-install.sh), but only on demand: the tests do not need them.
$(GHZ):
	hack/go-install.sh ghz github.com/bojand/ghz $(GHZ_VERSION) cmd/ghz
$(VEGETA):
	hack/go-install.sh vegeta github.com/tsenart/vegeta/v12 $(VEGETA_VERSION) .

# perf_analyzer from the tritonclient wheel (data/bin) with libcudart.so.12 beside it; wheels kept in $(WHEELS).
$(PERF_ANALYZER): $(VENV)/.installed
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(PY) -m pip download -q --no-deps -d $(WHEELS) tritonclient==$(PERF_ANALYZER_WHEEL_VERSION) \
		nvidia-cuda-runtime-cu12==$(CUDA_RUNTIME_WHEEL_VERSION)
	rm -rf $(@D) && mkdir -p $(@D)/wheel $(@D)/cuda
	$(PY) -m zipfile -e $(WHEELS)/tritonclient-$(PERF_ANALYZER_WHEEL_VERSION)-py3-none-manylinux1_x86_64.whl $(@D)/wheel
	$(PY) -m zipfile -e $(WHEELS)/nvidia_cuda_runtime_cu12-$(CUDA_RUNTIME_WHEEL_VERSION)-*.whl $(@D)/cuda
	install -m 755 $(@D)/wheel/tritonclient-$(PERF_ANALYZER_WHEEL_VERSION).data/data/bin/perf_analyzer $(@D)/perf_analyzer
	mv $(@D)/cuda/nvidia/cuda_runtime/lib $(@D)/lib && rm -rf $(@D)/wheel $(@D)/cuda
	LD_LIBRARY_PATH=$(@D)/lib $(@D)/perf_analyzer --version
	touch $@

.PHONY: bench-tools
bench-tools: $(GHZ) $(VEGETA) $(PERF_ANALYZER) ## ghz, vegeta (Go module proxy) and perf_analyzer (tritonclient wheel) at pinned versions
	@mkdir -p $(BIN)
	ln -sfn ../versions/ghz@$(GHZ_VERSION)/ghz $(BIN)/ghz
	ln -sfn ../versions/vegeta@$(VEGETA_VERSION)/vegeta $(BIN)/vegeta

.PHONY: bench-loadtest
bench-loadtest: bench-tools loadtest-engine ## Benchmark: loadtest vs perf_analyzer, ghz (gRPC) and vegeta (HTTP) against one local Triton; prints ratios
	$(PY) load-tests/bench/bench.py --perf-analyzer $(dir $(PERF_ANALYZER))perf_analyzer \
		--ghz $(BIN)/ghz --vegeta $(BIN)/vegeta $(BENCH_ARGS)

.PHONY: loadtest
loadtest: ## Load-test a deployed release (RELEASE, NAMESPACE, LOADTEST_ARGS, LOADTEST_MODE in-cluster or port-forward); prints the report folder
	$(if $(filter-out in-cluster port-forward,$(LOADTEST_MODE)),$(error LOADTEST_MODE=$(LOADTEST_MODE): in-cluster or port-forward))
	$(VENV)/bin/loadtest release --kubectl $(KUBECTL) --helm $(BIN)/helm --chart charts/emotion-serving \
		$(if $(filter port-forward,$(LOADTEST_MODE)),--port-forward) \
		--release $(RELEASE) --namespace $(NAMESPACE) --output $(LOADTEST_OUTPUT) -- $(LOADTEST_ARGS)
