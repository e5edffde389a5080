#!/usr/bin/env bash
# Benchmark: bareroot build against umoci, buildah, the tar|gzip shell method
# and the tar|compressor floors, on two workloads (W: ~15 programs with the
# python stdlib; L: W plus every shared library of /usr/lib/x86_64-linux-gnu),
# and `bareroot closure --json` against ldd.
#
#   bench/run.sh                # writes bench/results.md, bench/results.png,
#                               # bench/results-runs.tsv; prints the table
#
# Environment:
#   RUNS=5          timed runs per measurement on W (after one warm-up run)
#   RUNS_L=5        the same on L
#   CLOSURE_RUNS=5  timed runs of each closure resolver
#   KEEP=1          keep the temporary directory (printed at the start)
#
# Needs root for apt-get when pigz, zstd, buildah, umoci, skopeo or GNU time
# are missing, and pip for matplotlib (the plot). Uses no network otherwise:
# every tool reads and writes local directories only.
set -euo pipefail
export LC_ALL=C
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
RUNS=${RUNS:-5}
RUNS_L=${RUNS_L:-5}
CLOSURE_RUNS=${CLOSURE_RUNS:-5}
KEEP=${KEEP:-0}
PY=${PYTHON:-python3}
T_START=$EPOCHREALTIME

WORK=$(mktemp -d /tmp/bareroot-bench.XXXXXX)
RES=$WORK/res
LOG=$WORK/log
mkdir -p "$RES/cmds" "$WORK/scripts"
: >"$LOG"
: >"$RES/runs.tsv"
: >"$RES/meta.tsv"

# bareroot's layer cache: private to this run, and on.
export BAREROOT_CACHE_DIR=$WORK/bareroot-cache
unset BAREROOT_NO_CACHE SOURCE_DATE_EPOCH
BUILDAH_ROOT=$WORK/buildah-root
BUILDAH_RUN=$WORK/buildah-run

cleanup() {
    local rc=$?
    if [[ -x $(command -v buildah || true) && -d $BUILDAH_ROOT ]]; then
        buildah_cmd rm -a >/dev/null 2>&1 || true
    fi
    if [[ $KEEP == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
    echo "bench: $*" >&2
    echo "--- last lines of the log ---" >&2
    tail -n 30 "$LOG" >&2 || true
    exit 1
}

# ------------------------------------------------------------------ tools

need_pkgs=()
command -v /usr/bin/time >/dev/null 2>&1 || need_pkgs+=(time)
for pair in pigz:pigz zstd:zstd buildah:buildah umoci:umoci skopeo:skopeo ldd:libc-bin openssl:openssl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pair#*:}")
done
if ((${#need_pkgs[@]})); then
    say "installing ${need_pkgs[*]} with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"; } >>"$LOG" 2>&1 ||
        echo "bench: apt-get install ${need_pkgs[*]} failed; measurements needing them are skipped" >&2
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required"
have() { command -v "$1" >/dev/null 2>&1; }
if ! "$PY" -c 'import matplotlib' >/dev/null 2>&1; then
    say "installing matplotlib with pip"
    "$PY" -m pip install -q matplotlib >>"$LOG" 2>&1 || echo "bench: pip install matplotlib failed; no plot" >&2
fi

# The machine's memory, touched once before anything is timed. These VMs
# back guest memory lazily: the first write to a page costs the host a
# fault (writing a fresh 568 MB ran at ~330 MB/s, the same write again at
# ~5 GB/s), so without this whichever tool first fills the page cache pays
# for everyone. Up to 16 GiB, leaving 3 GiB free; through tmpfs, freed at once.
warm_mb=$(awk '/^MemAvailable:/{m=int($2/1024)-3072; if (m>16384) m=16384; if (m<0) m=0; print m}' /proc/meminfo)
if ((warm_mb > 0)) && [[ -d /dev/shm ]]; then
    say "touching ${warm_mb} MiB of memory once (lazily backed VM memory)"
    t_warm=$EPOCHREALTIME
    dd if=/dev/zero of=/dev/shm/bareroot-bench-warm bs=1M count="$warm_mb" status=none 2>>"$LOG" || true
    rm -f /dev/shm/bareroot-bench-warm
    printf 'memory_warm\t%s MiB in %s s\n' "$warm_mb" "$(awk -v a="$t_warm" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')" >>"$RES/info.tsv"
fi

say "building bareroot (cargo build --release --locked)"
built=0
for try in 1 2 3 4 5 6 7 8 9 10; do
    if (cd "$ROOT" && cargo build --release --locked) >>"$LOG" 2>&1; then
        built=1
        break
    fi
    say "cargo build failed (try $try); the tree may be mid-edit, retrying in 30 s"
    sleep 30
done
((built)) || die "cargo build --release --locked failed 10 times"
# A private copy, so that a rebuild by someone else mid-run changes nothing.
B=$WORK/bareroot
cp "$ROOT/target/release/bareroot" "$B"
NOCACHE=()
CACHE=no
if "$B" build --help | grep -q -- '--no-cache'; then
    NOCACHE=(--no-cache)
    CACHE=yes
fi
say "bareroot: $("$B" --version); --no-cache: $CACHE; work dir: $WORK"

# containers.conf, storage.conf and policy for buildah, private to this run.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$BUILDAH_ROOT"
runroot = "$BUILDAH_RUN"
EOF
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$WORK/policy.json"
: >"$WORK/registries.conf"
export CONTAINERS_CONF=$WORK/containers.conf
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
BUILDAH="buildah --root $BUILDAH_ROOT --runroot $BUILDAH_RUN --storage-driver vfs"
buildah_cmd() { $BUILDAH "$@"; }

# ---------------------------------------------------------------- recipes

W_BINARIES=(/usr/bin/perl /usr/bin/git /usr/bin/openssl /usr/bin/curl /usr/bin/bash
    /usr/bin/ls /usr/bin/cat /usr/bin/cp /usr/bin/sqlite3 /usr/bin/busybox)
for f in /usr/bin/python3.11 "${W_BINARIES[@]}"; do
    [[ -f $f ]] || die "$f is missing (install python3, perl, git, openssl, curl, sqlite3, busybox-static)"
done
[[ -d /usr/lib/python3.11 ]] || die "/usr/lib/python3.11 is missing"

write_w() { # NAME
    cat <<EOF
name = "$1"
tag = "latest"

[config]
entrypoint = ["/usr/bin/bash"]

[[binary]]
src = "/usr/bin/python3.11"
dest = "/usr/bin/python3"

[[tree]]
src = "/usr/lib/python3.11"
exclude = ["dist-packages", "__pycache__", "test"]
EOF
    local b
    for b in "${W_BINARIES[@]}"; do
        printf '\n[[binary]]\nsrc = "%s"\n' "$b"
    done
}
RECIPE_W=$WORK/W.toml
RECIPE_L=$WORK/L.toml
write_w bench-w >"$RECIPE_W"
find /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f -name '*.so*' | sort >"$WORK/so-all.txt"
"$PY" "$HERE/report.py" host-elf <"$WORK/so-all.txt" >"$WORK/so-elf.txt"
L_LIBS=$(wc -l <"$WORK/so-elf.txt")
L_SKIPPED=$(($(wc -l <"$WORK/so-all.txt") - L_LIBS))
{
    write_w bench-l
    while IFS= read -r lib; do
        printf '\n[[library]]\nname = "%s"\n' "$lib"
    done <"$WORK/so-elf.txt"
} >"$RECIPE_L"
cp "$RECIPE_W" "$RES/cmds/00-recipe-W.toml"
say "recipes: W ($((${#W_BINARIES[@]} + 1)) binaries + python3.11 stdlib tree), L (W + $L_LIBS libraries; $L_SKIPPED non-ELF .so* skipped)"

# ---------------------------------------------------------------- staging

layer_file() { # LAYOUT -> path of the layer blob
    local d
    d=$("$PY" "$HERE/report.py" layer "$1" | awk '{print $2}')
    printf '%s/blobs/sha256/%s\n' "$1" "${d#sha256:}"
}
for wl in W L; do
    recipe=$WORK/$wl.toml
    ref=$WORK/ref-$wl
    stage=$WORK/stage-$wl
    "$B" build "$recipe" --output "$ref" --compression none --quiet "${NOCACHE[@]}" >>"$LOG" 2>&1 ||
        die "bareroot build $recipe failed"
    layer=$(layer_file "$ref")
    mkdir -p "$stage"
    tar -xf "$layer" -C "$stage" --numeric-owner
    bytes=$(stat -c %s "$layer")
    files=$(tar -tf "$layer" | wc -l)
    printf 'bytes_%s\t%s\nfiles_%s\t%s\n' "$wl" "$bytes" "$wl" "$files" >>"$RES/info.tsv"
    say "staged $wl: $files entries, $((bytes / 1000000)) MB uncompressed tar in $stage"
done

# --------------------------------------------------------------- measuring

# measure TOOL WORKLOAD RUNS SETUP TIMED: run SETUP (untimed) then TIMED
# (timed: wall clock around it, peak RSS from GNU time), RUNS+1 times; the
# first is a warm-up and is not recorded. Returns 1 if a run failed.
measure() {
    local tool=$1 wl=$2 n=$3 setup=$4 timed=$5 i t0 t1 rss
    cp "$setup" "$RES/cmds/$tool-$wl.setup.sh"
    cp "$timed" "$RES/cmds/$tool-$wl.timed.sh"
    for ((i = 0; i <= n; i++)); do
        echo "== $tool $wl run $i" >>"$LOG"
        if ! bash "$setup" >>"$LOG" 2>&1; then
            echo "bench: setup of $tool on $wl failed (see below); skipped" >&2
            tail -n 15 "$LOG" >&2
            printf '%s\t%s\tstatus\tsetup failed\n' "$tool" "$wl" >>"$RES/meta.tsv"
            return 1
        fi
        # Earlier runs' dirty pages are written back now, not during this one.
        sync
        t0=$EPOCHREALTIME
        if ! /usr/bin/time -f %M -o "$WORK/rss" bash "$timed" >>"$LOG" 2>&1; then
            echo "bench: $tool on $wl failed (see below); skipped" >&2
            tail -n 15 "$LOG" >&2
            printf '%s\t%s\tstatus\tfailed\n' "$tool" "$wl" >>"$RES/meta.tsv"
            return 1
        fi
        t1=$EPOCHREALTIME
        rss=$(tail -n 1 "$WORK/rss")
        if ((i > 0)); then
            printf '%s\t%s\t%d\t%s\t%s\n' "$tool" "$wl" "$i" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')" "$rss" >>"$RES/runs.tsv"
        fi
    done
    local med
    med=$(awk -F'\t' -v t="$tool" -v w="$wl" '$1==t && $2==w {print $4}' "$RES/runs.tsv" | sort -n |
        awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    say "  $tool $wl: median ${med}s, peak RSS $((rss / 1024)) MiB (last run)"
}

meta() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES/meta.tsv"; }

# image_meta TOOL WL LAYOUT: the layer size, and skopeo's verdict.
image_meta() {
    local tool=$1 wl=$2 out=$3 size
    size=$("$PY" "$HERE/report.py" layer "$out" | awk '{print $1}') || size=n/a
    meta "$tool" "$wl" layer_bytes "$size"
    if have skopeo && skopeo inspect "oci:$out:latest" >"$WORK/skopeo.json" 2>>"$LOG"; then
        meta "$tool" "$wl" skopeo ok
    else
        meta "$tool" "$wl" skopeo FAILED
        echo "bench: skopeo inspect oci:$out:latest failed for $tool on $wl" >&2
    fi
}

# script NAME <<'EOF' ... EOF: a script file (with a strict header).
script() {
    local f=$WORK/scripts/$1
    { echo 'set -euo pipefail'; cat; } >"$f"
    echo "$f"
}

# rss_split RECIPE OUT COMP: "peak RssAnon A MiB, peak RssFile F MiB" of one build.
rss_split() {
    local pid anon=0 file=0 a f
    rm -rf "$2"
    "$B" build "$1" --output "$2" --compression "$3" --quiet "${NOCACHE[@]}" >>"$LOG" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        read -r a f < <(awk '/^RssAnon:/{a=$2} /^RssFile:/{f=$2} END{print a+0, f+0}' "/proc/$pid/status" 2>/dev/null || echo 0 0)
        if ((a > anon)); then anon=$a; fi
        if ((f > file)); then file=$f; fi
        sleep 0.02
    done
    wait "$pid" || return 1
    rm -rf "$2"
    printf 'peak RssAnon %d MiB, peak RssFile %d MiB' $((anon / 1024)) $((file / 1024))
}

TAR="tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner"

for wl in W L; do
    if [[ $wl == W ]]; then n=$RUNS; else n=$RUNS_L; fi
    recipe=$WORK/$wl.toml
    stage=$WORK/stage-$wl
    say "workload $wl ($n runs + 1 warm-up each)"

    # (1) bareroot
    for comp in gzip zstd none; do
        out=$WORK/out-bareroot-$comp-$wl
        s=$(script "br-$comp-$wl.setup" <<EOF
rm -rf $out
EOF
        )
        t=$(script "br-$comp-$wl.timed" <<EOF
exec $B build $recipe --output $out --compression $comp --quiet ${NOCACHE[*]}
EOF
        )
        if measure "bareroot-$comp" "$wl" "$n" "$s" "$t"; then
            image_meta "bareroot-$comp" "$wl" "$out"
            meta "bareroot-$comp" "$wl" what "\`bareroot build RECIPE --output DIR --compression $comp${NOCACHE[*]:+ ${NOCACHE[*]}}\` into a removed output directory: closure analysis, tar, $comp, hashing, OCI JSON, SBOM"
        fi
    done
    # The rebuild: the same recipe into the existing layout (gzip). The
    # warm-up run is the first build.
    out=$WORK/out-bareroot-rebuild-$wl
    s=$(script "br-rebuild-$wl.setup" <<<':')
    t=$(script "br-rebuild-$wl.timed" <<EOF
exec $B build $recipe --output $out --quiet
EOF
    )
    rm -rf "$out"
    if measure bareroot-rebuild "$wl" "$n" "$s" "$t"; then
        image_meta bareroot-rebuild "$wl" "$out"
        meta bareroot-rebuild "$wl" what "\`bareroot build RECIPE --output DIR\` again, unchanged recipe, existing output (cache: $CACHE)"
        a=$("$PY" -c 'import json,sys;print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$out/index.json")
        b=$("$PY" -c 'import json,sys;print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/out-bareroot-gzip-$wl/index.json" 2>/dev/null || echo none)
        if [[ $a == "$b" ]]; then
            say "  rebuild digest = full-build digest ($a)"
        else
            echo "bench: rebuild digest $a differs from full-build digest $b" >&2
        fi
    fi

    # (2) umoci: init + new + unpack + copy untimed; repack timed.
    if have umoci; then
        out=$WORK/out-umoci-$wl
        bundle=$WORK/bundle-umoci-$wl
        s=$(script "umoci-$wl.setup" <<EOF
rm -rf $out $bundle
umoci init --layout $out
umoci new --image $out:latest
umoci unpack --image $out:latest $bundle
cp -a $stage/. $bundle/rootfs/
EOF
        )
        t=$(script "umoci-$wl.timed" <<EOF
exec umoci repack --image $out:latest $bundle
EOF
        )
        if measure umoci-repack "$wl" "$n" "$s" "$t"; then
            image_meta umoci-repack "$wl" "$out"
            meta umoci-repack "$wl" what "\`umoci repack\` only (mtree diff of the bundle, tar, gzip, hashing, JSON); \`umoci init\`, \`new\`, \`unpack\` and copying the staged tree into the bundle's rootfs are untimed setup"
        fi
        rm -rf "$bundle"
    fi

    # (3) buildah
    if have buildah; then
        out=$WORK/out-buildah-$wl
        ctr=bench-$wl
        common="$BUILDAH"
        s=$(script "buildah-commit-$wl.setup" <<EOF
rm -rf $out
$common rm -a >/dev/null
$common from --name $ctr scratch
$common copy -q $ctr $stage/ /
EOF
        )
        t=$(script "buildah-commit-gzip-$wl.timed" <<EOF
exec $common commit -q --signature-policy $WORK/policy.json --timestamp 0 --disable-compression=false $ctr oci:$out:latest
EOF
        )
        if measure buildah-commit-gzip "$wl" "$n" "$s" "$t"; then
            image_meta buildah-commit-gzip "$wl" "$out"
            meta buildah-commit-gzip "$wl" what "\`buildah commit --timestamp 0 --disable-compression=false\` to \`oci:DIR\` only (gzip layer); \`buildah from scratch\` and \`buildah copy\` of the staged tree are untimed setup"
        fi
        t=$(script "buildah-commit-default-$wl.timed" <<EOF
exec $common commit -q --signature-policy $WORK/policy.json --timestamp 0 $ctr oci:$out:latest
EOF
        )
        if measure buildah-commit-default "$wl" "$n" "$s" "$t"; then
            image_meta buildah-commit-default "$wl" "$out"
            meta buildah-commit-default "$wl" what "\`buildah commit --timestamp 0\` with buildah's default compression for \`oci:\` (none: \`--disable-compression\` defaults to true), commit only"
        fi
        s=$(script "buildah-all-$wl.setup" <<EOF
rm -rf $out
$common rm -a >/dev/null
EOF
        )
        t=$(script "buildah-all-gzip-$wl.timed" <<EOF
$common from --name $ctr scratch >/dev/null
$common copy -q $ctr $stage/ /
$common commit -q --signature-policy $WORK/policy.json --timestamp 0 --disable-compression=false $ctr oci:$out:latest
EOF
        )
        if measure buildah-all-gzip "$wl" "$n" "$s" "$t"; then
            image_meta buildah-all-gzip "$wl" "$out"
            meta buildah-all-gzip "$wl" what "\`buildah from scratch\` + \`buildah copy\` of the staged tree + \`buildah commit --timestamp 0 --disable-compression=false\` to \`oci:DIR\`, all timed"
        fi
        buildah_cmd rm -a >/dev/null 2>&1 || true
    fi

    # (4) the shell method: a deterministic tar, gzip -6, both digests, and
    # the OCI JSON written with printf.
    out=$WORK/out-shell-$wl
    s=$(script "shell-$wl.setup" <<EOF
rm -rf $out
EOF
    )
    t=$(script "shell-gzip6-$wl.timed" <<EOF
out=$out
mkdir -p \$out/blobs/sha256
mkfifo \$out/tarpipe
sha256sum <\$out/tarpipe | cut -d' ' -f1 >\$out/diffid &
$TAR -C $stage -cf - . | tee \$out/tarpipe | gzip -6 -n | tee \$out/layer | sha256sum | cut -d' ' -f1 >\$out/digest
wait
rm \$out/tarpipe
L=\$(cat \$out/digest); D=\$(cat \$out/diffid); LS=\$(stat -c %s \$out/layer)
mv \$out/layer \$out/blobs/sha256/\$L
printf '{"architecture":"amd64","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"]},"created":"1970-01-01T00:00:00Z","os":"linux","rootfs":{"diff_ids":["sha256:%s"],"type":"layers"}}' "\$D" >\$out/config
C=\$(sha256sum <\$out/config | cut -d' ' -f1); CS=\$(stat -c %s \$out/config)
mv \$out/config \$out/blobs/sha256/\$C
printf '{"config":{"digest":"sha256:%s","mediaType":"application/vnd.oci.image.config.v1+json","size":%s},"layers":[{"digest":"sha256:%s","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":%s}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}' "\$C" "\$CS" "\$L" "\$LS" >\$out/manifest
M=\$(sha256sum <\$out/manifest | cut -d' ' -f1); MS=\$(stat -c %s \$out/manifest)
mv \$out/manifest \$out/blobs/sha256/\$M
printf '{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"latest"},"digest":"sha256:%s","mediaType":"application/vnd.oci.image.manifest.v1+json","size":%s}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}' "\$M" "\$MS" >\$out/index.json
printf '{"imageLayoutVersion":"1.0.0"}' >\$out/oci-layout
rm \$out/digest \$out/diffid
EOF
    )
    if measure shell-gzip6 "$wl" "$n" "$s" "$t"; then
        image_meta shell-gzip6 "$wl" "$out"
        meta shell-gzip6 "$wl" what "\`$TAR -C STAGE -cf - . | tee FIFO | gzip -6 -n | tee LAYER | sha256sum\` (+ \`sha256sum < FIFO\` for the diff_id), then config, manifest, index.json and oci-layout written with printf and hashed with sha256sum"
    fi

    # (5) floors: the tar stream through one compressor and a hash, nothing written.
    empty=$(script "floor-$wl.setup" <<<':')
    declare -A FLOOR=(
        [floor-pigz1]="pigz -p2 -1 | sha256sum"
        [floor-zstd3]="zstd -3 -T2 -q -c | sha256sum"
        [floor-sha256]="openssl dgst -sha256"
    )
    for f in floor-pigz1 floor-zstd3 floor-sha256; do
        case $f in
        floor-pigz1) have pigz || continue ;;
        floor-zstd3) have zstd || continue ;;
        esac
        t=$(script "$f-$wl.timed" <<EOF
$TAR -C $stage -cf - . | ${FLOOR[$f]} >/dev/null
EOF
        )
        if measure "$f" "$wl" "$n" "$empty" "$t"; then
            case $f in
            floor-pigz1) size=$($TAR -C "$stage" -cf - . | pigz -p2 -1 | wc -c) ;;
            floor-zstd3) size=$($TAR -C "$stage" -cf - . | zstd -3 -T2 -q -c | wc -c) ;;
            floor-sha256) size=$($TAR -C "$stage" -cf - . | wc -c) ;;
            esac
            meta "$f" "$wl" layer_bytes "$size"
            meta "$f" "$wl" skopeo "n/a (no image)"
            meta "$f" "$wl" what "\`$TAR -C STAGE -cf - . | ${FLOOR[$f]}\` (a lower bound: no image is written)"
        fi
    done

    # Where bareroot's peak RSS on L goes: anonymous memory or file pages
    # (mmapped inputs count in RSS). One extra untimed build per mode,
    # /proc/PID/status sampled every 20 ms.
    if [[ $wl == L ]]; then
        split=""
        for comp in gzip zstd none; do
            r=$(rss_split "$recipe" "$WORK/out-rss-$wl" "$comp") || r="failed"
            split="$split${split:+; }$comp: $r"
        done
        printf 'rss_split_L\t%s\n' "$split" >>"$RES/info.tsv"
        say "  bareroot peak RSS split on L: $split"
    fi

    # Free the disk the workload's outputs took.
    rm -rf "$WORK"/out-*-"$wl" "$WORK/bundle-umoci-$wl"
done

# ------------------------------------------------------ closure vs ldd

say "closure: bareroot closure --json vs ldd"
"$PY" "$HERE/report.py" dyn-list /usr/bin /usr/sbin /usr/lib/x86_64-linux-gnu >"$WORK/dyn.txt" 2>"$WORK/dyn.err"
cat "$WORK/dyn.err"
printf 'dyn_counts\t%s\n' "$(sed 's/^dyn-list: //' "$WORK/dyn.err")" >>"$RES/info.tsv"
empty=$(script "closure.setup" <<<':')
t=$(script "closure-bareroot.timed" <<EOF
mapfile -t files <$WORK/dyn.txt
rc=0
$B closure --json "\${files[@]}" >$WORK/closure.json || rc=\$?
# 1 means some library was not found; that is a result, not a failure.
[ \$rc -le 1 ]
EOF
)
measure closure-bareroot closure "$CLOSURE_RUNS" "$empty" "$t" || true
meta closure-bareroot closure what "\`bareroot closure --json FILE...\` over all files in one process"
lddout=$WORK/ldd-out
s=$(script "closure-ldd.setup" <<EOF
rm -rf $lddout
mkdir -p $lddout
EOF
)
t=$(script "closure-ldd.timed" <<EOF
# ldd prints a "FILE:" header only for more than one file; add it for one.
xargs -a $WORK/dyn.txt -d '\n' -P2 -n48 env -u LD_LIBRARY_PATH -u LD_PRELOAD sh -c '
    { if [ \$# -eq 1 ]; then echo "\$1:"; fi; ldd "\$@" || true; } >"\$0/\$\$.txt" 2>"\$0/\$\$.err"' $lddout
EOF
)
measure closure-ldd closure "$CLOSURE_RUNS" "$s" "$t" || true
meta closure-ldd closure what "\`xargs -P2 -n48 ldd\` over all files (one ld.so --list per file)"
if [[ -s $WORK/closure.json ]]; then
    "$PY" "$HERE/report.py" closure-compare "$WORK/dyn.txt" "$WORK/closure.json" "$lddout" "$RES/closure-compare.json" ||
        echo "bench: closure comparison failed" >&2
fi

# ---------------------------------------------------------------- report

T_END=$EPOCHREALTIME
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'cpus\t%s\n' "$(nproc)"
    printf 'mem\t%s\n' "$(free -g | awk '/^Mem:/{print $2 " GiB RAM"}')"
    printf 'os\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    printf 'bareroot_version\t%s\n' "$("$B" --version)"
    printf 'commit\t%s\n' "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf 'dirty\t%s\n' "$(if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then echo yes; else echo no; fi)"
    printf 'bareroot_cache\t%s\n' "$CACHE"
    printf 'runs\t%s\n' "$RUNS on W, $RUNS_L on L, $CLOSURE_RUNS for the closure"
    printf 'total_time\t%s\n' "$(awk -v a="$T_START" -v b="$T_END" 'BEGIN{printf "%.0f s", b-a}')"
    printf 'l_libs\t%s\nl_skipped\t%s\n' "$L_LIBS" "$L_SKIPPED"
    printf 'w_desc\t%s\n' "python3.11 (as /usr/bin/python3) with /usr/lib/python3.11 as a \`[[tree]]\` excluding dist-packages, __pycache__ and test; perl, git, openssl, curl, bash, ls, cat, cp, sqlite3 and static busybox as \`[[binary]]\`; with their closure"
    tv="umoci $(umoci --version 2>/dev/null | awk '{print $3}'), $(buildah --version 2>/dev/null | awk '{print "buildah " $3}'), skopeo $(skopeo --version 2>/dev/null | awk '{print $3}')"
    tv="$tv, $(tar --version | sed -n 1p), gzip $(gzip --version | sed -n 1p | awk '{print $2}'), pigz $(pigz --version 2>&1 | awk '{print $2}')"
    tv="$tv, zstd $(zstd --version | grep -o 'v[0-9.]*' | sed -n 1p), $(openssl version | awk '{print $1, $2}'), $(ldd --version | sed -n 1p)"
    printf 'tool_versions\t%s\n' "$tv"
} >>"$RES/info.tsv"
cp "$RES/runs.tsv" "$HERE/results-runs.tsv"
"$PY" "$HERE/report.py" report "$RES" "$HERE"
say "wrote $HERE/results.md, $HERE/results.png, $HERE/results-runs.tsv (total $(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f s", b-a}'))"
