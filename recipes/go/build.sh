#!/usr/bin/env bash
# Builds the Go program of recipes/go.toml into build/hello-go with
# Debian's Go toolchain (golang-go): static (CGO_ENABLED=0), its module
# dependency vendored (no module proxy is asked), -trimpath so the binary
# does not hold this checkout's path. The binary carries Go's build info:
# `go version -m build/hello-go` lists the module and its dependency,
# which is what SBOM scanners such as syft read.
set -euo pipefail
cd "$(dirname "$0")"
command -v go >/dev/null || { echo "build.sh: go not found (apt-get install golang-go)" >&2; exit 1; }
mkdir -p build
# The Go build cache lives beside the output, not in $HOME.
export GOCACHE="$PWD/build/gocache" GOPATH="$PWD/build/gopath"
export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
(cd src && go build -trimpath -buildvcs=false -o ../build/hello-go .)
echo "build.sh: built $(pwd)/build/hello-go"
