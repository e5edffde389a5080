#!/usr/bin/env bash
# The one test command: installs the Debian packages the tests need (only
# the missing ones), then builds once and runs every test with the lock file.
#
#   scripts/test.sh            # everything
#   scripts/test.sh e2e        # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh

cargo test --locked "$@"
