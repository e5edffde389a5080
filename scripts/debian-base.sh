#!/usr/bin/env bash
# Makes a real Debian root filesystem tarball with mmdebstrap, for use as a
# `rootfs:` base image (the [base] tests, recipes/on-debian.toml):
#
#   scripts/debian-base.sh bookworm amd64 target/test-bases/bookworm-amd64.tar
#
# Skips the work when OUT already exists (delete it to make it again).
#
# The host's architecture gets `--variant=minbase` (Essential packages and
# apt, maintainer scripts run: /etc/passwd, /etc/shadow, a dpkg database).
# A foreign architecture cannot run maintainer scripts without qemu-user
# registered with binfmt_misc, which containers and CI machines often lack,
# so it gets `--variant=extract` instead: the packages below unpacked and
# nothing run, which is a usable C library and no more —
#   libc6       the loader, libc, libm and the ld.so.conf.d entry
#   libgcc-s1   libgcc_s.so.1, which libc's pthread_cancel dlopens
#   base-files  /etc/os-release, /etc/debian_version and the FHS directories
# (its dependencies come along, and the merged-usr hook makes /bin, /lib and
# /sbin the symlinks into /usr that a minbase bookworm has too).
#
# Reproducible: SOURCE_DATE_EPOCH (mmdebstrap honours it: mtimes clamped,
# logs and caches that hold times removed) and the host's /etc/hostname and
# /etc/resolv.conf (which mmdebstrap copies in) replaced by fixed contents,
# so two runs against the same mirror content give the same bytes. The
# mirror moves on with point releases; for the same bytes next year, name a
# snapshot with MIRROR=http://snapshot.debian.org/archive/debian/20250520T000000Z.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SUITE ARCH OUT.tar" >&2; exit 2; }
suite=$1; arch=$2; out=$3
if [ -e "$out" ]; then
  echo "debian-base: $out exists"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "debian-base: needs mmdebstrap (scripts/install-test-deps.sh)" >&2; exit 1; }
# 2023-06-10, bookworm's release day: any fixed value would do.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1686355200}

host_arch=$(dpkg --print-architecture)
if [ "$arch" = "$host_arch" ]; then
  variant=(--variant=minbase); hook=--customize-hook
else
  variant=(--variant=extract --include=libc6,libgcc-s1,base-files
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
  # The extract variant runs no customize hooks.
  hook=--extract-hook
fi
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
mkdir -p "$(dirname "$out")"
partial="$out.partial"
rm -f "$partial"
trap 'rm -f "$partial"' EXIT
$SUDO env SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" mmdebstrap --quiet --mode=root --format=tar \
  --architectures="$arch" "${variant[@]}" \
  "$hook"='echo debian > "$1/etc/hostname"' \
  "$hook"='echo nameserver 127.0.0.1 > "$1/etc/resolv.conf"' \
  "$suite" "$partial" ${MIRROR:+"$MIRROR"}
[ "$(id -u)" -eq 0 ] || $SUDO chown "$(id -u):$(id -g)" "$partial"
mv "$partial" "$out"
trap - EXIT
echo "debian-base: $suite $arch (${variant[0]#--variant=}) in $out"
