#!/usr/bin/env bash
# Build one Go tool at a pinned version from the Go module proxy.
#
#   hack/go-install.sh NAME MODULE VERSION PACKAGE [LDFLAGS]
#
# The binary goes to $TOOLS/versions/NAME@VERSION/NAME (the Makefile links $TOOLS/bin/NAME to the
# version it names), so changing a version builds the new one and keeps the old one until `make clean`.
# It builds inside the downloaded module (not `go install pkg@version`): that skips the proxy's version
# list, which this registry refuses for some modules (chart-testing), and honours the module's go.mod.
set -euo pipefail
name=$1 module=$2 version=$3 package=$4 ldflags=${5:-}
tools=$(realpath -m "${TOOLS:?TOOLS must be set}")
dest="$tools/versions/$name@$version"
started=$SECONDS

dir=$(go mod download -json "$module@$version" | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])')
mkdir -p "$dest"
(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$dest/$name" "./$package")
echo "go-install: $name $version built in $((SECONDS - started)) s"
