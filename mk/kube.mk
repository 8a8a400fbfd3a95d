# A Kubernetes control plane for the tests (devstack's cluster): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and KWOK's fake nodes, built at pinned versions
# from the Go module proxy by `make setup` (about 13 min cold on 2 cores; cached after that).
##@ Kubernetes

KUBERNETES_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.6.8
KWOK_VERSION ?= v0.8.0

KUBE_BINARIES := kube-apiserver kube-controller-manager kube-scheduler kubectl
KUBE_DIR := $(TOOLS)/versions/kubernetes@$(KUBERNETES_VERSION)
ETCD_BIN := $(call versioned,etcd,$(ETCD_VERSION))
KWOK_BIN := $(call versioned,kwok,$(KWOK_VERSION))
# KWOK's Stage objects (pods and nodes move through their lifecycle) and the prometheus-operator CRDs,
# copied from their Go modules: the files devstack's cluster applies.
KUBE_DATA := $(TOOLS)/kube-data

# `make setup` builds the cluster too (a rule without a recipe adds a prerequisite to setup).
setup: kube

.PHONY: kube
kube: $(KUBE_DIR)/.installed $(ETCD_BIN) $(KWOK_BIN) $(KUBE_DATA)/.installed ## The test cluster's binaries and data (.tools/bin), built at pinned versions
	@mkdir -p $(BIN); for tool in $(KUBE_BINARIES); do ln -sfn "../versions/kubernetes@$(KUBERNETES_VERSION)/$$tool" "$(BIN)/$$tool"; done
	@ln -sfn "../versions/etcd@$(ETCD_VERSION)/etcd" "$(BIN)/etcd"
	@ln -sfn "../versions/kwok@$(KWOK_VERSION)/kwok" "$(BIN)/kwok"

$(KUBE_DIR)/.installed:
	hack/kube-build.sh kubernetes $(KUBERNETES_VERSION)
	touch $@

$(ETCD_BIN):
	hack/kube-build.sh etcd $(ETCD_VERSION)

$(KWOK_BIN):
	hack/go-install.sh kwok sigs.k8s.io/kwok $(KWOK_VERSION) cmd/kwok

module_dir = $$($(GO) mod download -json $(1) | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')

$(KUBE_DATA)/.installed:
	rm -rf $(@D) && mkdir -p $(@D)
	cp -r "$(call module_dir,sigs.k8s.io/kwok@$(KWOK_VERSION))/kustomize/stage" $(@D)/kwok-stage
	cp -r "$(call module_dir,github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION))/example/prometheus-operator-crd" \
		$(@D)/prometheus-operator-crd
	chmod -R u+w $(@D) && echo "$(KWOK_VERSION) $(PROMETHEUS_OPERATOR_VERSION)" > $@
