#!/usr/bin/env bash
# Build the Kubernetes control plane or etcd at a pinned version from the Go module proxy.
#
#   hack/kube-build.sh kubernetes VERSION   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#   hack/kube-build.sh etcd VERSION         etcd
#
# Binaries go to $TOOLS/versions/NAME@VERSION/ (mk/kube.mk links them into $TOOLS/bin). Neither
# project can be built inside its own downloaded module: k8s.io/kubernetes replaces its staging
# modules (k8s.io/api, ...) with folders its module zip lacks, and etcd's main module replaces its
# parts with local folders. So each is built from a small wrapper module in $CACHE/kube-build that
# requires the project and, for Kubernetes, replaces each staging module with its published release
# (k8s.io/NAME v0.MINOR.PATCH for Kubernetes v1.MINOR.PATCH).
set -euo pipefail
what=$1 version=$2
tools=$(realpath -m "${TOOLS:?TOOLS must be set}")
work=$(realpath -m "${CACHE:-.cache}/kube-build/$what@$version")
dest="$tools/versions/$what@$version"
started=$SECONDS

json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d[sys.argv[1]])' "$1"; }

rm -rf "$work" && mkdir -p "$work" "$dest"
cd "$work"
case $what in
kubernetes)
  gomod=$(go mod download -json "k8s.io/kubernetes@$version" | json_field GoMod)
  # The staging modules are the ones its go.mod replaces with ./staging/src/k8s.io/NAME.
  staging=$(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])')
  goversion=$(go mod edit -json "$gomod" | json_field Go)
  printf 'module emotion-serving.local/kube-build\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n' "$goversion" "$version" > go.mod
  for module in $staging; do go mod edit -replace "$module=$module@v0.${version#v1.}"; done
  echo "kube-build: k8s.io/kubernetes $version with $(wc -w <<<"$staging") staging modules at v0.${version#v1.}"
  minor=${version#v1.} minor=${minor%%.*}
  # Without the version stamp the servers report v0.0.0 and charts' kubeVersion constraints fail.
  ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  go build -mod=mod -trimpath -ldflags "$ldflags" -o "$dest/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  ;;
etcd)
  printf 'module emotion-serving.local/etcd-build\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$version" > go.mod
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go build -mod=mod -trimpath -o "$dest/etcd" .
  ;;
*)
  echo "kube-build: unknown target $what (kubernetes or etcd)" >&2
  exit 2
  ;;
esac
echo "kube-build: $what $version built in $((SECONDS - started)) s"
