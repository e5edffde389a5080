#!/usr/bin/env bash
# Rebuilds the golden recipes and rewrites tests/golden/digests.txt.
# Run it only when an image change is intended (a new tar/JSON layout, a
# compressor update in Cargo.lock), and say why in the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
{
  echo "# Top digests of recipes whose inputs are all committed (recipes/hello/,"
  echo "# recipes/files/). Regenerate with scripts/regen-goldens.sh."
  for r in hello.toml hello-files.toml; do
    d=$(env -u SOURCE_DATE_EPOCH ./target/release/bareroot build "recipes/$r" --output "$out/$r" --quiet | tail -n 1)
    echo "$r $d"
  done
} > tests/golden/digests.txt
cat tests/golden/digests.txt
