#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) from the committed seeds
# (fuzz/seeds/<target>), the committed regression corpus
# (tests/regressions/elf or recipe, where there is one) and the local corpus
# (fuzz/corpus/<target>, not committed). cargo-fuzz is installed from crates.io when missing. The
# targets build on stable Rust without a sanitizer (-s none), with
# optimizations and overflow checks (-O -a).
#
#   scripts/fuzz.sh        # CI: one minute each, so regressions show
#   scripts/fuzz.sh 600    # the ten-minute runs recorded in docs/development.md
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
for t in recipe elf_closure apply_layer registry_json; do
  mkdir -p "fuzz/corpus/$t"
  case "$t" in
    recipe) max=4096 regress=(tests/regressions/recipe) ;;
    elf_closure) max=65536 regress=(tests/regressions/elf) ;;
    apply_layer) max=65536 regress=(tests/regressions/apply_layer) ;;
    registry_json) max=16384 regress=() ;;
  esac
  echo "fuzz: $t for ${secs}s"
  cargo fuzz run -s none -O -a "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" "${regress[@]}" -- \
    -max_total_time="$secs" -max_len="$max" -print_final_stats=1 2>&1 | tail -n 12
done
