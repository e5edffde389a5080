#!/usr/bin/env bash
# Proves a change of code left every output byte as it was: builds every
# recipe in recipes/ with the binary of another commit and with the binary
# of the work tree, each with its own empty cache, the same epoch and the
# same flags (plain, --attach-sbom, --compression zstd, --oci-archive,
# --docker-archive, and a rebuild from a warm cache), and compares the results with `diff -r` and `cmp`.
#
#   scripts/same-bytes.sh REV          # REV built in a worktree under target/
#   scripts/same-bytes.sh --old BIN    # a bareroot binary you already have
#
# Recipes whose inputs are missing on this machine are reported and
# skipped; scripts/test.sh prepares them all (cross-compiled examples, the
# Debian arm64 sysroot). Exit 0 only when every built recipe is identical.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

case "${1:-}" in
  --old) old_bin=$(realpath "$2") ;;
  ""|-h|--help) sed -n '2,13p' "$0"; exit 2 ;;
  *)
    rev=$(git rev-parse --verify "$1^{commit}")
    wt="$repo/target/same-bytes/src-${rev:0:12}"
    if [ ! -d "$wt" ]; then
      git worktree add --detach --quiet "$wt" "$rev"
    fi
    CARGO_TARGET_DIR="$repo/target/same-bytes/target" \
      cargo build --locked --release --quiet --manifest-path "$wt/Cargo.toml"
    old_bin="$repo/target/same-bytes/target/release/bareroot"
    ;;
esac
cargo build --locked --release --quiet
new_bin="$repo/target/release/bareroot"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000
failed=0 compared=0 skipped=0

# build SIDE RECIPE NAME FLAGS...: one build with a fresh cache.
build() {
  local side=$1 recipe=$2 name=$3 bin
  shift 3
  [ "$side" = old ] && bin=$old_bin || bin=$new_bin
  mkdir -p "$work/$side/$name"
  BAREROOT_CACHE_DIR="$work/$side/$name.cache" "$bin" build "$recipe" \
    --output "$work/$side/$name/layout" --quiet "$@" \
    >"$work/$side/$name/stdout" 2>"$work/$side/$name/stderr"
}

for recipe in recipes/*.toml; do
  base=$(basename "$recipe" .toml)
  for variant in plain sbom zstd archives cached; do
    name="$base-$variant"
    case $variant in
      plain) flags=() ;;
      sbom) flags=(--attach-sbom) ;;
      zstd) flags=(--compression zstd) ;;
      cached) flags=() ;;
      archives) flags=(--oci-archive "$work/SIDE/$name/oci.tar"
                       --docker-archive "$work/SIDE/$name/docker.tar") ;;
    esac
    # cached: a second build into the same cache, the layer (and SBOM)
    # taken from it.
    if [ $variant = cached ]; then
      build old "$recipe" "$name" || true
      build new "$recipe" "$name" || true
    fi
    if ! build old "$recipe" "$name" "${flags[@]//SIDE/old}"; then
      echo "skip $name: the old binary cannot build it here ($(tail -n 1 "$work/old/$name/stderr"))"
      skipped=$((skipped + 1))
      continue
    fi
    if ! build new "$recipe" "$name" "${flags[@]//SIDE/new}"; then
      echo "DIFFERENT $name: the new binary failed: $(tail -n 1 "$work/new/$name/stderr")"
      failed=$((failed + 1))
      continue
    fi
    compared=$((compared + 1))
    same=1
    diff -r "$work/old/$name/layout" "$work/new/$name/layout" >/dev/null || same=0
    cmp -s "$work/old/$name/stdout" "$work/new/$name/stdout" || same=0
    for f in oci.tar docker.tar; do
      if [ -e "$work/old/$name/$f" ]; then
        cmp -s "$work/old/$name/$f" "$work/new/$name/$f" || same=0
      fi
    done
    if [ $same = 1 ]; then
      echo "same $name $(tail -n 1 "$work/new/$name/stdout")"
    else
      echo "DIFFERENT $name"
      diff -r "$work/old/$name/layout" "$work/new/$name/layout" | head -n 20 || true
      failed=$((failed + 1))
    fi
  done
done
echo "same-bytes: $compared compared, $failed different, $skipped skipped"
[ $failed = 0 ] && [ $compared -gt 0 ]
