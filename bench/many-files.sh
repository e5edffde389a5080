#!/usr/bin/env bash
# Benchmark: bareroot on many small files. Two workloads:
#   many  a synthetic tree of FILES small files (FILES/1000 directories
#         pkg000, pkg001, ... of 1000 files mod0000.py..mod0999.py, 240-260
#         bytes each, contents a function of the indices, mtime 0), as
#         `[[tree]] src = TREE, dest = "/app"`;
#   real  the host's /usr/include, /usr/share/locale and /usr/share/man in
#         place (three `[[tree]]`s with dest = src, so dpkg ownership, package
#         metadata and the SBOM's packages apply);
#   base  (not by default) /usr/bin/jq squashed onto a Debian minbase
#         rootfs tarball (`[base] image = "rootfs:BASE_TAR"`, squash = true);
#         its floor is the tarball's files, unpacked, through the same
#         tar | pigz.
# For each: the floor (a deterministic tar | pigz -p2 -3 | sha256sum), a full
# build (`--no-cache`), and an unchanged rebuild with the layer cache on
# (checked byte-identical to the full build). Then recipes/jq.toml built with
# an empty cache and with the cache the `many` builds left, cold and warm.
#
#   bench/many-files.sh         # prints the table; writes
#                               # bench/many-files-results.md and
#                               # bench/many-files-runs.tsv (every timed run);
#                               # other WORKLOADS: many-files-<them>-results.md
#                               # (WORKLOADS=base: many-files-base-results.md)
#
# Environment:
#   FILES=200000      synthetic files, a positive multiple of 1000
#                     (FILES=1000000: a million-file tree)
#   RUNS=5            timed runs per measurement (after one warm-up run)
#   WORKLOADS="many real"  the workloads to run, in order (jq needs `many`;
#                     add `base` for the squashed base image)
#   BASE_TAR=...      the rootfs tarball of `base` (default
#                     recipes/on-debian/bookworm.tar, which
#                     recipes/on-debian/make-base.sh makes with mmdebstrap)
#   BAREROOT_BIN=...  the binary to measure (default
#                     $ROOT/target/release/bareroot; copied into the work dir
#                     first, so a rebuild of it mid-run changes nothing)
#   RESULTS_DIR=...   where the .md and .tsv go (default: bench/)
#   WARM_MB=N         MiB of memory touched once before timing (default as in
#                     bench/run.sh: up to 16 GiB, leaving 3 GiB free; 0: none)
#   KEEP=1            keep the temporary directory (printed at the start)
#
# Needs python3 (the tree generator, JSON), GNU time, pigz and jq; the last
# three are installed with apt-get when missing (root). No network otherwise.
set -euo pipefail
export LC_ALL=C
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
FILES=${FILES:-200000}
RUNS=${RUNS:-5}
WORKLOADS=${WORKLOADS:-many real}
KEEP=${KEEP:-0}
PY=${PYTHON:-python3}
B_SRC=${BAREROOT_BIN:-$ROOT/target/release/bareroot}
RESULTS_DIR=${RESULTS_DIR:-$HERE}
T_START=$EPOCHREALTIME

[[ $FILES =~ ^[0-9]+$ ]] && ((FILES >= 1000 && FILES % 1000 == 0)) ||
    { echo "bench: FILES must be a positive multiple of 1000 (got $FILES)" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1)) || { echo "bench: RUNS must be >= 1 (got $RUNS)" >&2; exit 2; }
for wl in $WORKLOADS; do
    [[ $wl == many || $wl == real || $wl == base ]] ||
        { echo "bench: unknown workload $wl (many, real, base)" >&2; exit 2; }
done
[[ -x $B_SRC ]] || { echo "bench: $B_SRC is missing: cargo build --release, or set BAREROOT_BIN" >&2; exit 2; }

WORK=$(mktemp -d /tmp/bareroot-many-files.XXXXXX)
RES=$WORK/res
LOG=$WORK/log
mkdir -p "$RES" "$WORK/stdout"
: >"$LOG"
printf 'workload\tmeasure\trun\twall_s\ttime_e_s\tpeak_rss_kb\n' >"$RES/runs.tsv"
: >"$RES/info.md"
CMDS=()

# Nothing here reads or writes ~/.cache/bareroot: every command gets its own
# cache directory, and this is the fallback.
export BAREROOT_CACHE_DIR=$WORK/cache-default
unset BAREROOT_NO_CACHE SOURCE_DATE_EPOCH BAREROOT_TRACE BAREROOT_CACHE_MAX_BYTES

cleanup() {
    local rc=$?
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
    echo "--- last lines of the log ($LOG) ---" >&2
    tail -n 30 "$LOG" >&2 || true
    exit 1
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

# ------------------------------------------------------------------ tools

need_pkgs=()
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
command -v pigz >/dev/null 2>&1 || need_pkgs+=(pigz)
[[ -x /usr/bin/jq ]] || need_pkgs+=(jq)
if ((${#need_pkgs[@]})); then
    say "installing ${need_pkgs[*]} with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"; } >>"$LOG" 2>&1 ||
        die "apt-get install ${need_pkgs[*]} failed"
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required"
command -v pigz >/dev/null 2>&1 || die "pigz is required"
"$PY" -c 'import json, os' || die "$PY is required"

B=$WORK/bareroot
cp "$B_SRC" "$B"
say "bareroot: $("$B" --version) ($B_SRC); work dir: $WORK"

# The machine's memory, touched once before anything is timed (see
# bench/run.sh: these VMs back guest memory lazily).
if [[ -n ${WARM_MB:-} ]]; then
    warm_mb=$WARM_MB
else
    warm_mb=$(awk '/^MemAvailable:/{m=int($2/1024)-3072; if (m>16384) m=16384; if (m<0) m=0; print m}' /proc/meminfo)
fi
if ((warm_mb > 0)) && [[ -d /dev/shm ]]; then
    say "touching ${warm_mb} MiB of memory once (lazily backed VM memory)"
    t_warm=$EPOCHREALTIME
    dd if=/dev/zero of=/dev/shm/bareroot-many-files-warm bs=1M count="$warm_mb" status=none 2>>"$LOG" || true
    rm -f /dev/shm/bareroot-many-files-warm
    echo "- memory touched before timing: $warm_mb MiB in $(secs "$t_warm" "$EPOCHREALTIME") s" >>"$RES/info.md"
fi

# ------------------------------------------------------------------ inputs

TREE=$WORK/tree
REAL_DIRS=(usr/include usr/share/locale usr/share/man)
TAR="tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner"
declare -A RECIPE FLOOR_DIR FLOOR_PATHS ENTRIES

if [[ " $WORKLOADS " == *" many "* ]]; then
    say "generating $FILES files in $((FILES / 1000)) directories under $TREE"
    t_gen=$EPOCHREALTIME
    "$PY" - "$TREE" "$FILES" <<'EOF' || die "generating the tree failed"
import os, sys

root, files = sys.argv[1], int(sys.argv[2])
os.mkdir(root, 0o755)
for d in range(files // 1000):
    pkg = "pkg%03d" % d
    dpath = os.path.join(root, pkg)
    os.mkdir(dpath, 0o755)
    dfd = os.open(dpath, os.O_RDONLY | os.O_DIRECTORY)
    for f in range(1000):
        n = d * 1000 + f
        h = (n * 2654435761 + 12345) & 0xFFFFFFFF
        body = (
            f"# {pkg}/mod{f:04d}.py: generated by bareroot's bench/many-files.sh\n"
            f'"""Module {f} of package {d}."""\n\n'
            f"SEED = 0x{h:08x}\n"
            f'NAME = "{pkg}.mod{f:04d}"\n\n\n'
            f"def value(x):\n"
            f"    return (x * {h % 9973} + {n}) % {h % 65521 + 1}\n"
        )
        size = 240 + h % 21
        pad = "# " + ("%08x" % h) * 32
        body += pad[: max(0, size - len(body) - 1)] + "\n"
        fd = os.open("mod%04d.py" % f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
        os.write(fd, body.encode())
        os.utime(fd, (0, 0))
        os.close(fd)
    os.utime(dfd, (0, 0))
    os.close(dfd)
os.utime(root, (0, 0))
EOF
    ENTRIES[many]=$(find "$TREE" | wc -l)
    bytes=$(du -sb --apparent-size "$TREE" | cut -f1)
    echo "- many: generated $FILES files ($((FILES / 1000)) directories, ${ENTRIES[many]} entries, $bytes bytes apparent) in $(secs "$t_gen" "$EPOCHREALTIME") s" >>"$RES/info.md"
    say "  ${ENTRIES[many]} entries, $bytes bytes, $(secs "$t_gen" "$EPOCHREALTIME") s"
    RECIPE[many]=$WORK/many.toml
    cat >"${RECIPE[many]}" <<EOF
name = "many"
tag = "latest"

[[tree]]
src = "$TREE"
dest = "/app"
EOF
    FLOOR_DIR[many]=$TREE
    FLOOR_PATHS[many]=.
fi

if [[ " $WORKLOADS " == *" real "* ]]; then
    for d in "${REAL_DIRS[@]}"; do
        [[ -d /$d ]] || die "/$d is missing"
    done
    RECIPE[real]=$WORK/real.toml
    {
        printf 'name = "real"\ntag = "latest"\n'
        for d in "${REAL_DIRS[@]}"; do
            printf '\n[[tree]]\nsrc = "/%s"\ndest = "/%s"\n' "$d" "$d"
        done
    } >"${RECIPE[real]}"
    ENTRIES[real]=$( (cd / && find "${REAL_DIRS[@]}") | wc -l)
    FLOOR_DIR[real]=/
    FLOOR_PATHS[real]="${REAL_DIRS[*]}"
    echo "- real: /${REAL_DIRS[0]}, /${REAL_DIRS[1]}, /${REAL_DIRS[2]} in place, ${ENTRIES[real]} entries ($(cd / && du -sbc --apparent-size "${REAL_DIRS[@]}" | tail -n 1 | cut -f1) bytes apparent)" >>"$RES/info.md"
fi

if [[ " $WORKLOADS " == *" base "* ]]; then
    BASE_TAR=${BASE_TAR:-$ROOT/recipes/on-debian/bookworm.tar}
    [[ -f $BASE_TAR ]] || die "$BASE_TAR is missing: bash recipes/on-debian/make-base.sh (or set BASE_TAR)"
    [[ -x /usr/bin/jq ]] || die "/usr/bin/jq is missing (apt-get install jq)"
    mkdir -p "$WORK/base-root"
    tar -xf "$BASE_TAR" -C "$WORK/base-root" 2>>"$LOG" || die "unpacking $BASE_TAR failed"
    RECIPE[base]=$WORK/base.toml
    printf 'name = "base"\ntag = "latest"\n\n[base]\nimage = "rootfs:%s"\nsquash = true\n\n[[binary]]\nsrc = "/usr/bin/jq"\n' \
        "$BASE_TAR" >"${RECIPE[base]}"
    ENTRIES[base]=$(find "$WORK/base-root" | wc -l)
    FLOOR_DIR[base]=$WORK/base-root
    FLOOR_PATHS[base]=.
    echo "- base: $BASE_TAR ($(stat -c %s "$BASE_TAR") bytes), ${ENTRIES[base]} entries unpacked; /usr/bin/jq squashed onto it" >>"$RES/info.md"
fi

# --------------------------------------------------------------- measuring

# measure WL NAME N WARMUP SETUP TIMED [WARMUP_CMD]: N timed runs of TIMED
# (bash -c; wall clock from $EPOCHREALTIME around GNU time, peak RSS from
# its %M), each after SETUP (untimed) and a sync; with WARMUP=1 one more run
# first (WARMUP_CMD if given), not recorded. Each run's stdout is kept in
# $WORK/stdout/WL-NAME.I. Dies if anything fails.
measure() {
    local wl=$1 name=$2 n=$3 warm=$4 setup=$5 timed=$6 warmcmd=${7:-$6} i cmd t0 t1 e rss
    CMDS+=("$wl"$'\t'"$name"$'\t'"$setup"$'\t'"$timed")
    for ((i = 1 - warm; i <= n; i++)); do
        echo "== $wl $name run $i" >>"$LOG"
        bash -c "set -euo pipefail; $setup" >>"$LOG" 2>&1 || die "setup of $name on $wl failed: $setup"
        if ((i == 0)); then cmd=$warmcmd; else cmd=$timed; fi
        sync
        t0=$EPOCHREALTIME
        /usr/bin/time -f '%e %M' -o "$WORK/time" bash -c "set -euo pipefail; $cmd" \
            >"$WORK/stdout/$wl-$name.$i" 2>>"$LOG" || die "$name on $wl failed (run $i): $cmd"
        t1=$EPOCHREALTIME
        read -r e rss < <(tail -n 1 "$WORK/time")
        if ((i > 0)); then
            printf '%s\t%s\t%d\t%s\t%s\t%s\n' "$wl" "$name" "$i" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')" "$e" "$rss" >>"$RES/runs.tsv"
        fi
    done
    say "  $wl $name: min/median $(stat2 "$wl" "$name" 4 " / ") s, peak RSS median $(rss_med "$wl" "$name") MiB"
}

# stat2 WL NAME COLUMN SEP: "min SEP median" of a runs.tsv column.
stat2() {
    awk -F'\t' -v w="$1" -v m="$2" -v c="$3" 'NR>1 && $1==w && $2==m {print $c}' "$RES/runs.tsv" | sort -g |
        awk -v sep="$4" '{a[NR]=$1} END{if (!NR) {print "n/a"; exit}
            med=(NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2); printf "%.3f%s%.3f", a[1], sep, med}'
}
median() { stat2 "$1" "$2" "${3:-4}" " " | awk '{print $2}'; }
rss_med() { median "$1" "$2" 6 | awk '{printf "%.0f", $1/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b>0) printf "%.2f", a/b; else print "n/a"}'; }

# digests WL NAME: the last line of every run's stdout, sorted, unique.
digests() { for f in "$WORK/stdout/$1-$2".*; do tail -n 1 "$f"; done | sort -u; }
one_digest() { # WL NAME: the digest every run printed, or die
    local d
    d=$(digests "$1" "$2")
    [[ -n $d && $(wc -l <<<"$d") == 1 ]] || die "$1 $2: the runs printed different digests: $(echo $d)"
    printf '%s\n' "$d"
}

json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$2"; }
layer_of() { # LAYOUT -> "path size" of the (only) layer blob
    local m l
    m=$(json 'd["manifests"][0]["digest"].split(":")[1]' "$1/index.json")
    l=$(json 'd["layers"][0]["digest"].split(":")[1] + " " + str(d["layers"][0]["size"])' "$1/blobs/sha256/$m")
    printf '%s/blobs/sha256/%s\n' "$1" "$l"
}

# cache_info DIR: listing, total size, stat cache size.
cache_info() {
    local c=$1
    echo
    echo "Every file of the cache directory (\`\$WORK/${c#"$WORK"/}\`) but a stored base tree's \`rootfs/\`, which is summed up after:"
    echo
    echo '```'
    (cd "$c" && find . -path './trees/*/rootfs/*' -prune -o -printf '%M %10s %TY-%Tm-%Td %TH:%TM %p\n' | sort -k5)
    echo '```'
    echo
    local t
    for t in "$c"/trees/*/rootfs; do
        [[ -d $t ]] || continue
        echo "- stored base tree ${t#"$c"/}: $(find "$t" | wc -l) entries, $(du -sb "$t" | cut -f1) bytes"
    done
    echo "- cache on disk: $(du -sb "$c" | cut -f1) bytes ($(du -sh "$c" | cut -f1))"
    local stat
    stat=$(cd "$c" && find . -type f \( -path './stat/*' -o -name 'digests*' \) -printf '%s %P\n')
    if [[ -n $stat ]]; then
        echo "- stat cache: $(awk '{s+=$1} END{print s}' <<<"$stat") bytes in $(wc -l <<<"$stat") file(s): $(awk '{printf "%s%s (%s bytes)", (NR>1?", ":""), $2, $1}' <<<"$stat")"
    else
        echo "- stat cache: no stat/* or digests* file found"
    fi
}

declare -A DIG LAYER_BYTES LAYER_ENTRIES SBOM_BYTES FLOOR_BYTES FLOOR_SHA
for wl in $WORKLOADS; do
    recipe=${RECIPE[$wl]}
    cache=$WORK/cache-$wl
    outf=$WORK/out-$wl-full
    outr=$WORK/out-$wl-rebuild
    say "workload $wl (${ENTRIES[$wl]} entries; $RUNS runs + 1 warm-up each)"

    # (a) the floor: nothing written, one compressor, one hash. The warm-up
    # also counts the compressed bytes.
    floor="cd ${FLOOR_DIR[$wl]} && $TAR -cf - ${FLOOR_PATHS[$wl]} | pigz -p2 -3 -n | sha256sum"
    floor_warm="rm -f $WORK/fifo && mkfifo $WORK/fifo && { wc -c <$WORK/fifo >$WORK/floor-bytes-$wl & }
cd ${FLOOR_DIR[$wl]} && $TAR -cf - ${FLOOR_PATHS[$wl]} | pigz -p2 -3 -n | tee $WORK/fifo | sha256sum; wait"
    measure "$wl" floor "$RUNS" 1 ":" "$floor" "$floor_warm"
    FLOOR_SHA[$wl]=$(one_digest "$wl" floor | awk '{print $1}')
    FLOOR_BYTES[$wl]=$(cat "$WORK/floor-bytes-$wl")

    # (b) a full build: --no-cache, into a removed output directory.
    measure "$wl" full "$RUNS" 1 "rm -rf $outf" \
        "BAREROOT_CACHE_DIR=$cache exec $B build $recipe --no-cache --output $outf --quiet"
    DIG[$wl]=$(one_digest "$wl" full)

    # (c) the unchanged rebuild: one priming build with the cache on (from
    # an empty cache, timed once for information), then the same command
    # again into the existing output.
    rebuild="BAREROOT_CACHE_DIR=$cache exec $B build $recipe --output $outr --quiet"
    measure "$wl" prime 1 0 "rm -rf $cache $outr" "$rebuild"
    measure "$wl" rebuild "$RUNS" 1 ":" "$rebuild"
    for m in prime rebuild; do
        d=$(digests "$wl" "$m")
        [[ $d == "${DIG[$wl]}" ]] ||
            die "REPRODUCIBILITY FAILURE on $wl: $m printed $(echo $d), the full build ${DIG[$wl]}"
    done
    diff -r "$outf" "$outr" >>"$LOG" 2>&1 ||
        die "REPRODUCIBILITY FAILURE on $wl: the rebuild's layout differs from the full build's (diff -r in the log)"
    say "  rebuild = full build, byte for byte (${DIG[$wl]})"

    read -r layer LAYER_BYTES[$wl] < <(layer_of "$outf")
    LAYER_ENTRIES[$wl]=$(tar -tzf "$layer" | wc -l)
    sbom=("$outf"/sbom-*.spdx.json)
    SBOM_BYTES[$wl]=$(stat -c %s "${sbom[0]}" 2>/dev/null || echo n/a)
    {
        echo
        echo "### $wl"
        echo
        echo "- image digest: \`${DIG[$wl]}\` (the full build, the priming build and every rebuild)"
        echo "- layer: ${LAYER_BYTES[$wl]} bytes gzip, ${LAYER_ENTRIES[$wl]} tar entries; floor: ${FLOOR_BYTES[$wl]} bytes, sha256 \`${FLOOR_SHA[$wl]}\`"
        echo "- SBOM: \`$(basename "${sbom[0]}")\` ${SBOM_BYTES[$wl]} bytes"
        echo "- priming build (cache on, from an empty cache; one run): $(median "$wl" prime) s, peak RSS $(rss_med "$wl" prime) MiB"
        cache_info "$cache"
    } >>"$RES/info.md"
    say "  layer ${LAYER_BYTES[$wl]} bytes, ${LAYER_ENTRIES[$wl]} entries; SBOM ${SBOM_BYTES[$wl]} bytes; cache $(du -sh "$cache" | cut -f1)"
    rm -rf "$outf" "$outr"
done

# ------------------------------------------------- a small build after a big one

JQ_OK=0
if [[ -d $WORK/cache-many ]]; then
    [[ -x /usr/bin/jq ]] || die "/usr/bin/jq is missing (apt-get install jq)"
    say "jq after the many builds ($RUNS runs + 1 warm-up each)"
    jqr=$ROOT/recipes/jq.toml
    cj=$WORK/cache-jq-empty
    cb=$WORK/cache-many
    oj=$WORK/out-jq
    jqcmd() { echo "BAREROOT_CACHE_DIR=$1 exec $B build $jqr --output $oj --quiet"; }
    # Cold: no entry of jq's in the cache. In the empty cache, every run starts
    # from an empty directory; in the big one, jq's entries are removed (those
    # the empty cache got: its second-level paths, layers/KEY and stat/FILE).
    measure jq cold-empty "$RUNS" 1 "rm -rf $cj $oj && mkdir -p $cj" "$(jqcmd "$cj")"
    (cd "$cj" && find . -mindepth 2 -maxdepth 2 -printf '%P\n') | sort >"$WORK/jq-entries"
    [[ -s $WORK/jq-entries ]] || die "the jq build left nothing in its cache"
    while IFS= read -r p; do
        [[ ! -e $cb/$p ]] || die "the many cache already has $p, which the jq build makes; cannot measure jq cold in it"
    done <"$WORK/jq-entries"
    measure jq cold-big "$RUNS" 1 "rm -rf $oj && cd $cb && xargs -d '\n' rm -rf -- <$WORK/jq-entries" "$(jqcmd "$cb")"
    # Warm: jq's own entries present (from the last cold run), output removed.
    measure jq warm-empty "$RUNS" 1 "rm -rf $oj" "$(jqcmd "$cj")"
    measure jq warm-big "$RUNS" 1 "rm -rf $oj" "$(jqcmd "$cb")"
    DIG[jq]=$(one_digest jq cold-empty)
    for m in cold-big warm-empty warm-big; do
        [[ $(digests jq "$m") == "${DIG[jq]}" ]] || die "REPRODUCIBILITY FAILURE on jq: $m printed $(digests jq "$m" | tr '\n' ' '), cold-empty ${DIG[jq]}"
    done
    JQ_OK=1
    {
        echo
        echo "### jq"
        echo
        echo "- image digest: \`${DIG[jq]}\` (every jq build); jq's cache entries: $(tr '\n' ' ' <"$WORK/jq-entries")"
        echo "- the big cache when jq ran: $(du -sb "$cb" | cut -f1) bytes, $(find "$cb" -mindepth 2 -maxdepth 2 | wc -l) second-level entries"
    } >>"$RES/info.md"
else
    say "no many workload: the jq measurement is skipped"
fi

# ---------------------------------------------------------------- report

T_END=$EPOCHREALTIME
report() {
    local dirty wl fm fullm rebm
    dirty=$(if [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then echo ", src/ dirty"; fi)
    echo "# bareroot on many small files"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/{print $2 " GiB RAM"}'), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
    echo "- bareroot: $("$B" --version), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty; binary $B_SRC ($(stat -c %y "$B_SRC" | cut -d. -f1), sha256 $(sha256sum "$B" | cut -c1-12))"
    echo "- tools: $(tar --version | sed -n 1p), pigz $(pigz --version 2>&1 | awk '{print $2}'), $(jq --version 2>/dev/null || echo no jq)"
    echo "- invocation: \`FILES=$FILES RUNS=$RUNS WORKLOADS=\"$WORKLOADS\" bench/many-files.sh\`; $RUNS timed runs after one warm-up each; total $(secs "$T_START" "$T_END") s"
    echo "- wall time: \`\$EPOCHREALTIME\` around \`/usr/bin/time -f '%e %M' bash -c CMD\`; peak RSS: GNU time's %M (for a pipeline, its largest process); \`sync\` before each run, untimed"
    echo
    echo "| workload | entries | floor min / median s | full min / median s (× floor median) | rebuild min / median s (× full median) | peak RSS MiB, full / rebuild |"
    echo "|---|---:|---:|---:|---:|---:|"
    for wl in $WORKLOADS; do
        fm=$(median "$wl" floor)
        fullm=$(median "$wl" full)
        rebm=$(median "$wl" rebuild)
        printf '| %s | %s | %s | %s (%s×) | %s (%s×) | %s / %s |\n' \
            "$(case $wl in
                many) echo "many ($FILES files)" ;;
                real) echo "real (/${REAL_DIRS[0]}, /${REAL_DIRS[1]}, /${REAL_DIRS[2]})" ;;
                base) echo "base (jq squashed onto $(basename "$BASE_TAR"))" ;;
            esac)" \
            "${ENTRIES[$wl]}" "$(stat2 "$wl" floor 4 " / ")" \
            "$(stat2 "$wl" full 4 " / ")" "$(ratio "$fullm" "$fm")" \
            "$(stat2 "$wl" rebuild 4 " / ")" "$(ratio "$rebm" "$fullm")" \
            "$(rss_med "$wl" full)" "$(rss_med "$wl" rebuild)"
    done
    if ((JQ_OK)); then
        echo
        echo "recipes/jq.toml after the many builds (with the cache they used, against an empty one):"
        echo
        echo "| jq build | empty cache: min / median s, peak RSS MiB | many's cache: min / median s, peak RSS MiB | median ratio many / empty |"
        echo "|---|---:|---:|---:|"
        for t in cold warm; do
            printf '| %s | %s, %s | %s, %s | %s× (RSS %s×) |\n' \
                "$(if [[ $t == cold ]]; then echo "cold (no jq entry in the cache)"; else echo "warm (jq's layer cached)"; fi)" \
                "$(stat2 jq "$t-empty" 4 " / ")" "$(rss_med jq "$t-empty")" \
                "$(stat2 jq "$t-big" 4 " / ")" "$(rss_med jq "$t-big")" \
                "$(ratio "$(median jq "$t-big")" "$(median jq "$t-empty")")" \
                "$(ratio "$(median jq "$t-big" 6)" "$(median jq "$t-empty" 6)")"
        done
    fi
    echo
    echo "## Details"
    cat "$RES/info.md"
    echo
    echo "## Commands"
    echo
    echo "\`\$WORK\` is the temporary directory; \`bareroot\` its copy of the binary. SETUP runs untimed before each run."
    echo
    local c wl2 name setup timed
    echo '```'
    for c in "${CMDS[@]}"; do
        IFS=$'\t' read -r wl2 name setup timed <<<"$c"
        setup=${setup//"$B"/bareroot}
        timed=${timed//"$B"/bareroot}
        setup=${setup//"$WORK"/\$WORK}
        timed=${timed//"$WORK"/\$WORK}
        timed=${timed//exec /}
        timed=${timed//$'\n'/; }
        echo "# $wl2 $name"
        [[ $setup == : ]] || echo "SETUP: $setup"
        echo "$timed"
    done
    echo '```'
    echo
    echo "Recipes:"
    for wl in $WORKLOADS; do
        echo
        echo '```toml'
        sed "s|$WORK|\$WORK|g" "${RECIPE[$wl]}"
        echo '```'
    done
}
report >"$RES/report.md"
mkdir -p "$RESULTS_DIR"
# Other workloads than the default go to files named after them, so a
# `base` run never overwrites the many-file results.
NAME=many-files
[[ $WORKLOADS == "many real" ]] || NAME="many-files-$(tr -s ' ' '-' <<<"$WORKLOADS" | sed 's/^-//; s/-$//')"
cp "$RES/report.md" "$RESULTS_DIR/$NAME-results.md"
cp "$RES/runs.tsv" "$RESULTS_DIR/$NAME-runs.tsv"
echo
cat "$RES/report.md"
echo
say "wrote $RESULTS_DIR/$NAME-results.md and $RESULTS_DIR/$NAME-runs.tsv (total $(secs "$T_START" "$EPOCHREALTIME") s)"
