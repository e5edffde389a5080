#!/usr/bin/env bash
# The one test command: installs the Debian packages the tests need (only
# the missing ones), then builds once and runs every test with the lock file.
#
#   scripts/test.sh            # everything
#   scripts/test.sh e2e        # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# Test inputs made from those packages: the cross-compiled example programs,
# the Go program of recipes/go.toml,
# and a sysroot of real Debian arm64 packages (no emulation needed to build).
bash recipes/multiarch/build.sh
bash recipes/go/build.sh
bash scripts/debian-sysroot.sh arm64 target/test-sysroots/debian-arm64 \
  jq libjq1 libonig5 libc6 libgcc-s1 sqlite3 libsqlite3-0 libreadline8 libtinfo6 zlib1g
# Real Debian root filesystems (mmdebstrap), the tests' base images: jq on
# bookworm, the symbol-version failure on bullseye, a two-platform base.
# recipes/on-debian.toml's base (the conformance test builds every recipe)
# is the same tarball: made once, linked.
bash recipes/on-debian/make-base.sh
mkdir -p target/test-bases
ln -f recipes/on-debian/bookworm.tar target/test-bases/bookworm-amd64.tar
bash scripts/debian-base.sh bullseye amd64 target/test-bases/bullseye-amd64.tar
bash scripts/debian-base.sh bookworm arm64 target/test-bases/bookworm-arm64.tar

cargo test --locked "$@"
