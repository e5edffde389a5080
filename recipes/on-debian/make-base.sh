#!/usr/bin/env bash
# Makes recipes/on-debian/bookworm.tar, the base of recipes/on-debian.toml:
# a Debian bookworm minbase for amd64, made reproducibly by mmdebstrap.
set -euo pipefail
cd "$(dirname "$0")"
exec ../../scripts/debian-base.sh bookworm amd64 bookworm.tar
