#!/usr/bin/env python3
"""Helpers for bench/run.sh: ELF triage, layer sizes, the ldd comparison and
the final report (table, ratios, results.md, results.png).

Only the standard library, except matplotlib for the plot (optional: the
report is written without a plot when it cannot be imported).

Subcommands:
  host-elf                 stdin: paths; prints those that are ELF of the host
                           class/machine (x86-64, little endian)
  dyn-list DIR...          prints the real paths of the dynamically linked
                           host ELF files directly in DIR (deduplicated);
                           counts go to stderr
  layer LAYOUT             prints "<compressed bytes> <layer digest>" of the
                           tagged image's (only) layer
  closure-compare LIST BAREROOT_JSON LDD_DIR OUT_JSON
                           compares bareroot's closure with ldd's, per file,
                           as sets of real paths and of sonames not found
  report RES_DIR BENCH_DIR prints the table and ratios and writes
                           BENCH_DIR/results.md and BENCH_DIR/results.png
"""

import json
import os
import statistics
import struct
import sys

EM_X86_64 = 62


# ------------------------------------------------------------------ ELF


def elf_head(path):
    """(class64, little, machine, has_interp, has_needed) or None if not ELF."""
    try:
        with open(path, "rb") as f:
            h = f.read(64)
            if len(h) < 64 or h[:4] != b"\x7fELF":
                return None
            class64, little = h[4] == 2, h[5] == 1
            if not class64 or not little:
                return (class64, little, 0, False, False)
            machine = struct.unpack_from("<H", h, 18)[0]
            phoff = struct.unpack_from("<Q", h, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", h, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
            has_interp = has_needed = False
            for i in range(phnum):
                p = ph[i * phentsize:(i + 1) * phentsize]
                if len(p) < 56:
                    break
                ptype = struct.unpack_from("<I", p, 0)[0]
                off, filesz = struct.unpack_from("<Q", p, 8)[0], struct.unpack_from("<Q", p, 32)[0]
                if ptype == 3:
                    has_interp = True
                elif ptype == 2:
                    f.seek(off)
                    dyn = f.read(min(filesz, 1 << 20))
                    for j in range(0, len(dyn) - 15, 16):
                        tag = struct.unpack_from("<Q", dyn, j)[0]
                        if tag == 0:
                            break
                        if tag == 1:
                            has_needed = True
            return (class64, little, machine, has_interp, has_needed)
    except OSError:
        return None


def is_host_elf(path):
    h = elf_head(path)
    return h is not None and h[0] and h[1] and h[2] == EM_X86_64


def cmd_host_elf(_args):
    for line in sys.stdin:
        p = line.rstrip("\n")
        if p and is_host_elf(p):
            print(p)


def cmd_dyn_list(dirs):
    seen = set()
    counts = {"dynamic": 0, "static": 0, "foreign": 0, "other": 0}
    out = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            try:
                real = os.path.realpath(os.path.join(d, name), strict=True)
            except OSError:
                continue
            if real in seen or not os.path.isfile(real):
                continue
            seen.add(real)
            h = elf_head(real)
            if h is None:
                counts["other"] += 1
            elif not (h[0] and h[1] and h[2] == EM_X86_64):
                counts["foreign"] += 1
            elif h[3] or h[4]:
                counts["dynamic"] += 1
                out.append(real)
            else:
                counts["static"] += 1
    for p in out:
        print(p)
    print(
        "dyn-list: %d dynamic, %d static, %d foreign ELF, %d other (%d files)"
        % (counts["dynamic"], counts["static"], counts["foreign"], counts["other"], len(seen)),
        file=sys.stderr,
    )


# --------------------------------------------------------------- layouts


def layer_of(layout):
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)

    def blob(d):
        algo, hexd = d.split(":", 1)
        with open(os.path.join(layout, "blobs", algo, hexd)) as f:
            return json.load(f)

    desc = index["manifests"][0]
    m = blob(desc["digest"])
    if "manifests" in m:  # an image index
        m = blob(m["manifests"][0]["digest"])
    layers = m["layers"]
    if len(layers) != 1:
        raise SystemExit("%s: %d layers, expected 1" % (layout, len(layers)))
    return layers[0]["size"], layers[0]["digest"], layers[0]["mediaType"]


def cmd_layer(args):
    size, digest, media = layer_of(args[0])
    print(size, digest, media)


# ---------------------------------------------------------- closure check


def real(p):
    try:
        return os.path.realpath(p, strict=True)
    except OSError:
        return p


def parse_ldd_text(text, results, errors):
    """ldd FILE... prints "FILE:" before each file's lines."""
    current = None
    for line in text.splitlines():
        if not line.startswith("\t"):
            if line.endswith(":"):
                current = line[:-1]
                results[current] = (set(), set())
                continue
            errors.append("unexpected ldd line %r" % line)
            continue
        if current is None:
            errors.append("ldd line before any header %r" % line)
            continue
        paths, missing = results[current]
        l = line.strip()
        if l.startswith("linux-vdso.so") or l.startswith("linux-gate.so"):
            continue
        if " => " in l:
            name, rest = l.split(" => ", 1)
            rest = rest.strip()
            if rest == "not found":
                missing.add(name)
            else:
                path = rest.rsplit(" (0x", 1)[0].strip()
                paths.add(real(path))
        elif " (0x" in l:
            paths.add(real(l.rsplit(" (0x", 1)[0].strip()))
        else:
            errors.append("%s: ldd says %r" % (current, l))


def cmd_closure_compare(args):
    list_file, bjson, ldd_dir, out = args
    files = [l.rstrip("\n") for l in open(list_file) if l.strip()]
    with open(bjson) as f:
        ours_raw = json.load(f)
    ours = {}
    for e in ours_raw:
        paths, missing = set(), set()
        if e.get("interpreter"):
            paths.add(real(e["interpreter"]))
        for lib in e["libraries"]:
            if lib["path"] is None:
                missing.add(lib["soname"])
            else:
                paths.add(real(lib["path"]))
        ours[e["file"]] = (paths, missing)
    theirs, errors = {}, []
    for name in sorted(os.listdir(ldd_dir)):
        with open(os.path.join(ldd_dir, name), errors="replace") as f:
            parse_ldd_text(f.read(), theirs, errors)
    bad = []
    for f in files:
        t, o = theirs.get(f), ours.get(f)
        if t is None:
            bad.append("%s: no ldd output" % f)
        elif o is None:
            bad.append("%s: missing from bareroot's output" % f)
        elif t != o:
            bad.append(
                "%s: only in ldd: %s; only in bareroot: %s; not found only per ldd: %s; "
                "not found only per bareroot: %s"
                % (f, sorted(t[0] - o[0]), sorted(o[0] - t[0]), sorted(t[1] - o[1]), sorted(o[1] - t[1]))
            )
    res = {
        "files": len(files),
        "agree": len(files) - len(bad),
        "disagreements": bad,
        "ldd_parse_errors": errors,
        "missing_per_bareroot": sum(1 for v in ours.values() if v[1]),
    }
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print("closure-compare: %d/%d files agree with ldd" % (res["agree"], res["files"]))
    for b in bad[:20]:
        print("  " + b)
    for e in errors[:10]:
        print("  ldd: " + e)


# ----------------------------------------------------------------- report


def read_tsv(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    rows.append(line.split("\t"))
    return rows


def fmt(x, nd=2):
    return "n/a" if x is None else ("%.*f" % (nd, x))


def cmd_report(args):
    res, bench = args
    runs = read_tsv(os.path.join(res, "runs.tsv"))
    meta = {}
    for tool, wl, key, val in read_tsv(os.path.join(res, "meta.tsv")):
        meta.setdefault((tool, wl), {})[key] = val
    info = {k: v for k, v in read_tsv(os.path.join(res, "info.tsv"))}

    order, data = [], {}
    for tool, wl, _i, secs, rss in runs:
        key = (tool, wl)
        if key not in data:
            order.append(key)
            data[key] = {"t": [], "rss": []}
        data[key]["t"].append(float(secs))
        data[key]["rss"].append(int(rss))

    def stat(tool, wl):
        d = data.get((tool, wl))
        if not d:
            return None
        m = meta.get((tool, wl), {})
        lb = m.get("layer_bytes")
        return {
            "min": min(d["t"]),
            "med": statistics.median(d["t"]),
            "n": len(d["t"]),
            "rss": max(d["rss"]) / 1024.0,
            "layer": int(lb) if lb not in (None, "", "n/a") else None,
            "skopeo": m.get("skopeo", "n/a"),
            "what": m.get("what", ""),
        }

    tools = []
    for tool, _ in order:
        if tool not in tools:
            tools.append(tool)
    workloads = ["W", "L"]

    lines = []
    hdr = "| tool | workload | runs | min s | median s | layer MB | peak RSS MiB | skopeo inspect |"
    lines.append(hdr)
    lines.append("|---|---|---:|---:|---:|---:|---:|---|")
    for wl in workloads:
        for tool in tools:
            s = stat(tool, wl)
            if s is None:
                continue
            lines.append(
                "| %s | %s | %d | %.3f | %.3f | %s | %.1f | %s |"
                % (
                    tool, wl, s["n"], s["min"], s["med"],
                    fmt(s["layer"] / 1e6 if s["layer"] is not None else None, 2),
                    s["rss"], s["skopeo"],
                )
            )
    table = "\n".join(lines)

    # Ratios -----------------------------------------------------------
    ratio_lines = ["| ratio | workload | by median | by min | target | met |", "|---|---|---:|---:|---|---|"]
    verdicts = []

    def ratio(name, num, den, wl, target, le=True):
        a, b = stat(num, wl), stat(den, wl)
        want = "(info)" if target is None else "%s %s" % ("≤" if le else "≥", target)
        if a is None or b is None:
            ratio_lines.append("| %s | %s | n/a | n/a | %s | n/a |" % (name, wl, want))
            return
        rm = a["med"] / b["med"]
        rn = a["min"] / b["min"]
        if target is None:
            ratio_lines.append("| %s | %s | %.3f | %.3f | %s | |" % (name, wl, rm, rn, want))
            return
        ok = rm <= target if le else rm >= target
        ratio_lines.append(
            "| %s | %s | %.3f | %.3f | %s %s | %s |"
            % (name, wl, rm, rn, "≤" if le else "≥", target, "yes" if ok else "**no**")
        )
        verdicts.append((name, wl, ok, rm))

    cache = info.get("bareroot_cache", "no")
    for wl in workloads:
        ratio("bareroot(gzip) / umoci repack", "bareroot-gzip", "umoci-repack", wl, 0.5)
        ratio("bareroot(gzip) / buildah commit (gzip)", "bareroot-gzip", "buildah-commit-gzip", wl, 0.5)
        ratio("bareroot(gzip) / buildah from+copy+commit (gzip)", "bareroot-gzip", "buildah-all-gzip", wl, 0.5)
        ratio("bareroot(gzip) / shell tar\\|gzip -6", "bareroot-gzip", "shell-gzip6", wl, None)
        ratio("bareroot(none) / buildah commit (default: uncompressed)", "bareroot-none", "buildah-commit-default", wl, None)
        ratio("bareroot(gzip) / floor pigz -p2 -1", "bareroot-gzip", "floor-pigz1", wl, 1.25)
        ratio("bareroot(zstd) / floor zstd -3 -T2", "bareroot-zstd", "floor-zstd3", wl, 1.25)
        ratio("bareroot(none) / floor sha256", "bareroot-none", "floor-sha256", wl, 1.5)
        ratio("bareroot rebuild / full (cache: %s)" % cache, "bareroot-rebuild", "bareroot-gzip", wl, 0.1)

    size_lines = ["| comparison | workload | bareroot MB | other MB | met (≤) |", "|---|---|---:|---:|---|"]
    for wl in workloads:
        b = stat("bareroot-gzip", wl)
        for other in ("umoci-repack", "buildah-commit-gzip", "shell-gzip6"):
            o = stat(other, wl)
            if b and o and b["layer"] and o["layer"]:
                ok = b["layer"] <= o["layer"]
                size_lines.append(
                    "| bareroot(gzip) vs %s | %s | %.2f | %.2f | %s |"
                    % (other, wl, b["layer"] / 1e6, o["layer"] / 1e6, "yes" if ok else "**no**")
                )
                if other != "shell-gzip6":  # gzip -6 against bareroot's level: information only
                    verdicts.append(("layer size bareroot(gzip) ≤ " + other, wl, ok, b["layer"] / o["layer"]))
        bz, fz = stat("bareroot-zstd", wl), stat("floor-zstd3", wl)
        if bz and fz and bz["layer"] and fz["layer"]:
            size_lines.append(
                "| bareroot(zstd) vs floor zstd -3 | %s | %.2f | %.2f | %s |"
                % (wl, bz["layer"] / 1e6, fz["layer"] / 1e6, "yes" if bz["layer"] <= fz["layer"] else "**no**")
            )

    rss_lines = ["| bareroot mode | workload | peak RSS MiB | target | met |", "|---|---|---:|---|---|"]
    for mode in ("bareroot-gzip", "bareroot-zstd", "bareroot-none", "bareroot-rebuild"):
        s = stat(mode, "L")
        if s:
            ok = s["rss"] < 64
            rss_lines.append("| %s | L | %.1f | < 64 | %s |" % (mode, s["rss"], "yes" if ok else "**no**"))
            verdicts.append(("peak RSS " + mode, "L", ok, s["rss"]))

    # Closure ----------------------------------------------------------
    closure_md = ""
    cc_path = os.path.join(res, "closure-compare.json")
    cb, cl = stat("closure-bareroot", "closure"), stat("closure-ldd", "closure")
    if cb and cl:
        cc = json.load(open(cc_path)) if os.path.exists(cc_path) else {}
        speed = cl["med"] / cb["med"]
        same = cc.get("agree") == cc.get("files") and not cc.get("ldd_parse_errors")
        verdicts.append(("closure speed-up ldd/bareroot ≥ 10", "closure", speed >= 10, speed))
        verdicts.append(("closure sets identical to ldd", "closure", same, cc.get("agree")))
        closure_md = (
            "| | files | min s | median s | peak RSS MiB |\n|---|---:|---:|---:|---:|\n"
            "| `bareroot closure --json` (one process) | %s | %.3f | %.3f | %.1f |\n"
            "| `ldd` (batches of 48, 2 in parallel) | %s | %.3f | %.3f | %.1f |\n\n"
            "Speed-up ldd/bareroot (medians): **%.1f×** (target ≥ 10×: %s; by min: %.1f×). "
            "Same real-path sets and not-found sonames: **%s/%s files agree** (%s).\n"
            % (
                cc.get("files", "?"), cb["min"], cb["med"], cb["rss"],
                cc.get("files", "?"), cl["min"], cl["med"], cl["rss"],
                speed, "met" if speed >= 10 else "**not met**", cl["min"] / cb["min"],
                cc.get("agree", "?"), cc.get("files", "?"), "met" if same else "**not met**",
            )
        )
        if cc.get("disagreements"):
            closure_md += "\nDisagreements:\n\n" + "\n".join("- `%s`" % d for d in cc["disagreements"][:50]) + "\n"
        if cc.get("ldd_parse_errors"):
            closure_md += "\nldd output not parsed:\n\n" + "\n".join("- `%s`" % d for d in cc["ldd_parse_errors"][:20]) + "\n"

    # Print ------------------------------------------------------------
    print()
    print(table)
    print()
    print("\n".join(ratio_lines))
    print()
    print("\n".join(size_lines))
    print()
    print("\n".join(rss_lines))
    if closure_md:
        print()
        print(closure_md)

    # Plot -------------------------------------------------------------
    png = os.path.join(bench, "results.png")
    plot_note = ""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, 6.5), dpi=110)
        colors = plt.get_cmap("tab20").colors
        xs = {wl: float(info.get("bytes_" + wl, "0")) / 1e6 for wl in workloads}
        for k, tool in enumerate(tools):
            pts = [(xs[wl], stat(tool, wl)["med"]) for wl in workloads if stat(tool, wl) and xs[wl] > 0]
            if len(pts) < 1:
                continue
            style = "-o" if tool.startswith("bareroot") else ("--s" if tool.startswith("floor") else ":^")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=tool, color=colors[k % len(colors)])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("workload size, uncompressed tar of the staged tree (MB)  [W, L]")
        ax.set_ylabel("median wall time (s)")
        ax.set_title("single-layer image build time vs workload size (%s, %s)" % (info.get("cpus", "?") + " CPUs", info.get("date", "")))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(png)
        plot_note = "![time vs workload size](results.png)\n"
    except Exception as e:  # noqa: BLE001 - the report is still useful
        plot_note = "(no plot: %s)\n" % e
        print("report: no plot: %s" % e, file=sys.stderr)

    # results.md -------------------------------------------------------
    cmds = ""
    cmd_dir = os.path.join(res, "cmds")
    if os.path.isdir(cmd_dir):
        for name in sorted(os.listdir(cmd_dir)):
            if "-L." in name:
                continue  # the same as W's, with L's paths
            with open(os.path.join(cmd_dir, name)) as f:
                text = f.read().rstrip()
            if text.replace("set -euo pipefail", "").strip() in ("", ":"):
                continue  # an empty setup
            lang = "toml" if name.endswith(".toml") else "sh"
            cmds += "#### %s\n\n```%s\n%s\n```\n\n" % (name, lang, text)

    whats = []
    for (tool, wl), m in sorted(meta.items()):
        if m.get("what") and wl == "W":
            whats.append("- **%s**: %s" % (tool, m["what"]))

    met = [v for v in verdicts if v[2]]
    unmet = [v for v in verdicts if not v[2]]
    summary = "Targets met: %d of %d.\n\nNot met:\n\n%s\n" % (
        len(met), len(verdicts),
        "\n".join("- %s (%s): %s" % (n, wl, fmt(x, 3) if isinstance(x, float) else x) for n, wl, _, x in unmet) or "- none",
    )

    md = """# bareroot benchmark results

Date: {date}. Machine: {cpus} CPUs, {mem}, {os}. {bver} (commit {commit}{dirty}), built with
`cargo build --release --locked`. Other tools: {tools}.

Produced by `bench/run.sh` (runs per measurement: {runs} after one warm-up run; the page cache is
warm, caches cannot be dropped here; `sync` runs, untimed, before each timed run, and the VM's memory was
touched once before the run: {memory_warm}). Wall time is measured around each timed command; peak RSS
is `/usr/bin/time -f %M`, which for a pipeline or a script is the largest single process, not
the sum. Total benchmark run time: {total}.

## Workloads

- **W**: {w_desc}
- **L**: W plus every top-level `.so*` regular file of /usr/lib/x86_64-linux-gnu that is x86-64
  ELF ({l_libs} files, as `[[library]]` entries by absolute path; {l_skipped} non-ELF skipped).

| workload | files in image (incl. dirs, links) | uncompressed tar MB |
|---|---:|---:|
| W | {files_W} | {mb_W} |
| L | {files_L} | {mb_L} |

Every tool packs the same tree: bareroot's own image (built once with `--compression none`)
is unpacked into a staging directory, and umoci, buildah, the shell method and the floors read
that directory. The image includes what bareroot adds by default (dpkg status.d/md5sums,
copyright files, os-release, ld.so.cache, libgcc_s); the SPDX SBOM is written next to
index.json by bareroot only.

What each row times:

{whats}

`bareroot build` has a `--no-cache` flag: {nocache}. bareroot-rebuild is a second build of the
unchanged recipe into the existing output directory{rebuild_note}.

## Results

{table}

{plot}
## Targets (ratios of wall times)

{ratios}

## Layer size (compressed bytes)

{sizes}

## Peak RSS on L

{rss}

Split of bareroot's peak RSS on L (one extra build per mode, `/proc/PID/status` sampled every
20 ms; file pages are mmapped inputs): {rss_split}.

## Closure: `bareroot closure --json` vs `ldd`

Every dynamically linked x86-64 ELF file (PT_INTERP or DT_NEEDED) directly in /usr/bin,
/usr/sbin and /usr/lib/x86_64-linux-gnu, deduplicated by real path ({dyn_counts}). bareroot
resolves all of them in one process; ldd runs as `xargs -P2 -n48 ldd` (one ld.so process per
file, two batches at a time), which is the fastest way to run it on 2 cores. Results are
compared per file as sets of real paths (interpreter included, vdso excluded) and of sonames
not found.

{closure}

## Summary

{summary}

## Exact commands

The recipe of W (L adds one `[[library]]` per library), then the setup (untimed) and timed script of
every measurement on W, exactly as run (L's are the same with L's paths; empty setups are left out). Paths under /tmp/bareroot-bench.* are the run's temporary
directory: `W.toml`/`L.toml` the recipes, `stage-W`/`stage-L` the staged trees, `out-*` the images.

{cmds}
""".format(
        date=info.get("date", "?"),
        cpus=info.get("cpus", "?"),
        mem=info.get("mem", "?"),
        os=info.get("os", "?"),
        bver=info.get("bareroot_version", "?"),
        commit=info.get("commit", "?"),
        dirty=", work tree with uncommitted changes" if info.get("dirty") == "yes" else "",
        tools=info.get("tool_versions", "?"),
        runs=info.get("runs", "?"),
        total=info.get("total_time", "?"),
        memory_warm=info.get("memory_warm", "not done"),
        w_desc=info.get("w_desc", ""),
        l_libs=info.get("l_libs", "?"),
        l_skipped=info.get("l_skipped", "?"),
        files_W=info.get("files_W", "?"),
        files_L=info.get("files_L", "?"),
        mb_W=fmt(float(info.get("bytes_W", "0")) / 1e6, 1),
        mb_L=fmt(float(info.get("bytes_L", "0")) / 1e6, 1),
        whats="\n".join(whats),
        nocache="yes, full builds use it" if cache == "yes" else "no (this binary has no build cache)",
        rebuild_note=("" if cache == "yes" else "; with no cache it is a full build again, so the rebuild/full ratio is ~1 by construction"),
        table=table,
        plot=plot_note,
        ratios="\n".join(ratio_lines),
        sizes="\n".join(size_lines),
        rss="\n".join(rss_lines),
        rss_split=info.get("rss_split_L", "n/a"),
        dyn_counts=info.get("dyn_counts", "?"),
        closure=closure_md or "(not run)",
        summary=summary,
        cmds=cmds,
    )
    with open(os.path.join(bench, "results.md"), "w") as f:
        f.write(md)
    print()
    print(summary)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "host-elf": cmd_host_elf,
        "dyn-list": cmd_dyn_list,
        "layer": cmd_layer,
        "closure-compare": cmd_closure_compare,
        "report": cmd_report,
    }[cmd](args)


if __name__ == "__main__":
    main()
