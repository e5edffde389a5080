#!/usr/bin/env bash
# Makes a sysroot of another architecture from Debian packages, without
# installing anything: adds the architecture to dpkg (once), downloads the
# packages with `apt-get download PKG:ARCH` and extracts each with `dpkg -x`.
#
#   scripts/debian-sysroot.sh arm64 target/test-sysroots/debian-arm64 jq libjq1 libc6 ...
#
# Skips the work when DIR already holds exactly these packages.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 ARCH DIR PKG..." >&2; exit 2; }
arch=$1; dir=$2; shift 2
want="$arch $*"
if [ -f "$dir/.bareroot-sysroot" ] && [ "$(cat "$dir/.bareroot-sysroot")" = "$want" ]; then
  echo "debian-sysroot: $dir is up to date"
  exit 0
fi
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  $SUDO dpkg --add-architecture "$arch"
  $SUDO apt-get update -qq
fi
pkgs=(); for p in "$@"; do pkgs+=("$p:$arch"); done
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -qq "${pkgs[@]}" >/dev/null 2>&1); then
  # The package lists may predate the architecture or a new release.
  $SUDO apt-get update -qq
  (cd "$work" && apt-get download -qq "${pkgs[@]}")
fi
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
for deb in "$work"/*.deb; do dpkg -x "$deb" "$dir.tmp"; done
echo "$want" > "$dir.tmp/.bareroot-sysroot"
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "debian-sysroot: extracted ${#pkgs[@]} $arch packages into $dir"
