//! Several platforms at once: `recipes/multiarch.toml` (C programs
//! cross-compiled for five platforms by `recipes/multiarch/build.sh`) and
//! `recipes/tools-arm64.toml` (jq and sqlite3 from real Debian arm64
//! packages, extracted by `scripts/debian-sysroot.sh`).
//!
//! - The layout is read back by hand (serde_json, sha2, the system tar and
//!   an ELF header reader of its own, none of bareroot's code): an image
//!   index of one manifest per platform, each layer holding only ELF files
//!   of its platform's machine, class and float ABI.
//! - Every platform's image runs with `bareroot run`, foreign ones under
//!   qemu-user, and exit codes come back unchanged.
//! - The closure oracle: `bareroot closure --platform linux/arm64` agrees
//!   with the real arm64 glibc loader (run under qemu-aarch64-static) on
//!   every dynamically linked ELF file of the Debian arm64 sysroot.
//! - skopeo pushes the index to a local registry (Debian's docker-registry)
//!   and reads back the same digest.
//! - Errors: a binary of another machine, a library missing from a sysroot.
//!
//! Each recipe is built once per test run (see [`layouts_dir`]).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{self, bareroot, ok, require, run, stderr, stdout, tempdir};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One platform of `recipes/multiarch.toml`.
struct Plat {
    /// What `--platform` takes.
    name: &'static str,
    arch: &'static str,
    variant: Option<&'static str>,
    /// Debian's multiarch triplet: `recipes/multiarch/build/<triplet>/`.
    triplet: &'static str,
    /// ELF `e_machine` and class.
    machine: u16,
    class64: bool,
    /// `(mask, value)` that `e_flags` must match (the float ABI).
    flags: Option<(u32, u32)>,
    /// What `uname -m` says under this platform (qemu-user's emulation).
    uname: &'static str,
    /// qemu-user binary for a foreign platform; `None` for the host's.
    qemu: Option<&'static str>,
}

/// In the index's order: sorted by os/architecture/variant.
const PLATFORMS: [Plat; 5] = [
    Plat {
        name: "linux/386",
        arch: "386",
        variant: None,
        triplet: "i386-linux-gnu",
        machine: 3,
        class64: false,
        flags: None,
        uname: "i686",
        qemu: Some("qemu-i386-static"),
    },
    Plat {
        name: "linux/amd64",
        arch: "amd64",
        variant: None,
        triplet: "x86_64-linux-gnu",
        machine: 62,
        class64: true,
        flags: None,
        uname: "x86_64",
        qemu: None,
    },
    Plat {
        name: "linux/arm/v7",
        arch: "arm",
        variant: Some("v7"),
        triplet: "arm-linux-gnueabihf",
        machine: 40,
        class64: false,
        // EF_ARM_ABI_FLOAT_HARD
        flags: Some((0x400, 0x400)),
        uname: "armv7l",
        qemu: Some("qemu-arm-static"),
    },
    Plat {
        name: "linux/arm64",
        arch: "arm64",
        variant: Some("v8"),
        triplet: "aarch64-linux-gnu",
        machine: 183,
        class64: true,
        flags: None,
        uname: "aarch64",
        qemu: Some("qemu-aarch64-static"),
    },
    Plat {
        name: "linux/riscv64",
        arch: "riscv64",
        variant: None,
        triplet: "riscv64-linux-gnu",
        machine: 243,
        class64: true,
        // EF_RISCV_FLOAT_ABI_DOUBLE (lp64d)
        flags: Some((0x6, 0x4)),
        uname: "riscv64",
        qemu: Some("qemu-riscv64-static"),
    },
];

/// The programs of `recipes/multiarch.toml`, where the image puts them.
const PROGRAMS: [&str; 4] = [
    "usr/bin/hello",
    "usr/bin/mathy",
    "opt/greeter/bin/greeter",
    "opt/greeter/lib/libgreet.so.1",
];

// -------------------------------------------------------------- fixtures

fn recipe(name: &str) -> PathBuf {
    support::repo().join("recipes").join(name)
}

use crate::support::Built;

fn layouts_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| support::run_dir("multiarch"))
}

fn build_once(cell: &'static OnceLock<Built>, file: &str, name: &str) -> &'static Built {
    support::build_once(cell, layouts_dir(), &recipe(file), name)
}

/// `recipes/multiarch.toml`, built once; fails when the cross-compiled
/// programs are missing.
fn multiarch() -> &'static Built {
    for p in &PLATFORMS {
        let hello = support::repo()
            .join("recipes/multiarch/build")
            .join(p.triplet)
            .join("hello");
        assert!(
            hello.is_file(),
            "{} is missing: run recipes/multiarch/build.sh or scripts/test.sh \
             (they cross-compile the multiarch programs)",
            hello.display()
        );
    }
    static B: OnceLock<Built> = OnceLock::new();
    build_once(&B, "multiarch.toml", "multiarch")
}

/// The sysroot of real Debian arm64 packages (canonical path); fails when
/// it was not prepared.
fn debian_arm64() -> PathBuf {
    let s = support::repo().join("target/test-sysroots/debian-arm64");
    for f in [".bareroot-sysroot", "usr/bin/jq", "usr/bin/sqlite3"] {
        assert!(
            s.join(f).is_file(),
            "{} is missing: run scripts/test.sh, or scripts/debian-sysroot.sh arm64 \
             target/test-sysroots/debian-arm64 jq libjq1 libonig5 libc6 libgcc-s1 sqlite3 \
             libsqlite3-0 libreadline8 libtinfo6 zlib1g",
            s.join(f).display()
        );
    }
    fs::canonicalize(&s).unwrap()
}

/// `recipes/tools-arm64.toml`, built once.
fn tools() -> &'static Built {
    debian_arm64();
    static B: OnceLock<Built> = OnceLock::new();
    build_once(&B, "tools-arm64.toml", "tools")
}

// --------------------------------------------------------------- helpers

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The blob a descriptor names, checked against its media type, digest and
/// size.
fn blob(layout: &Path, desc: &Value, media_type: &str) -> PathBuf {
    assert_eq!(desc["mediaType"], media_type, "descriptor {desc}");
    let digest = desc["digest"].as_str().expect("descriptor digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let path = layout.join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(
        format!("{:x}", Sha256::digest(&bytes)),
        hex,
        "blob {digest}: content does not match its name"
    );
    assert_eq!(
        desc["size"].as_u64(),
        Some(bytes.len() as u64),
        "blob {digest}"
    );
    path
}

fn blob_json(layout: &Path, desc: &Value, media_type: &str) -> Value {
    read_json(&blob(layout, desc, media_type))
}

/// The `platform` object an index lists for `p`.
fn platform_json(p: &Plat) -> Value {
    let mut v = json!({"os": "linux", "architecture": p.arch});
    if let Some(variant) = p.variant {
        v["variant"] = json!(variant);
    }
    v
}

fn platform_key(v: &Value) -> String {
    [&v["os"], &v["architecture"], &v["variant"]]
        .iter()
        .filter_map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("/")
}

/// What the ELF header and program headers say (little-endian only: every
/// platform here is).
#[derive(Debug)]
struct ElfHead {
    class64: bool,
    machine: u16,
    flags: u32,
    dynamic: bool,
}

/// `None` when `b` is not ELF.
fn elf_head(b: &[u8]) -> Option<ElfHead> {
    if b.len() < 52 || &b[..4] != b"\x7fELF" {
        return None;
    }
    assert_eq!(b[5], 1, "not little-endian");
    let class64 = b[4] == 2;
    let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let word = |o: usize| {
        if class64 {
            u64_at(o) as usize
        } else {
            u32_at(o) as usize
        }
    };
    let (phoff, flags, phentsize, phnum) = if class64 {
        (word(32), u32_at(48), u16_at(54), u16_at(56))
    } else {
        (word(28), u32_at(36), u16_at(42), u16_at(44))
    };
    let mut dynamic = false;
    for i in 0..usize::from(phnum) {
        let ph = phoff + i * usize::from(phentsize);
        let (offset, filesz) = if class64 {
            (word(ph + 8), word(ph + 32))
        } else {
            (word(ph + 4), word(ph + 16))
        };
        match u32_at(ph) {
            3 => dynamic = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC: look for DT_NEEDED
                let step = if class64 { 16 } else { 8 };
                for at in (offset..offset + filesz).step_by(step) {
                    match word(at) {
                        0 => break,
                        1 => dynamic = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(ElfHead {
        class64,
        machine: u16_at(18),
        flags,
        dynamic,
    })
}

/// Check every ELF file of an unpacked layer against the platform; return
/// how many there are.
fn check_elf_files(root: &Path, p: &Plat) -> usize {
    for prog in PROGRAMS {
        assert!(
            root.join(prog).is_file(),
            "{}: /{prog} is not in the layer",
            p.name
        );
    }
    let mut n = 0;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.expect("walk the layer");
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = fs::read(entry.path()).unwrap();
        let Some(h) = elf_head(&bytes) else { continue };
        let rel = entry.path().strip_prefix(root).unwrap().display();
        assert_eq!(
            (h.machine, h.class64),
            (p.machine, p.class64),
            "{}: /{rel} has machine {} and ELF{} (want {} and ELF{})",
            p.name,
            h.machine,
            if h.class64 { 64 } else { 32 },
            p.machine,
            if p.class64 { 64 } else { 32 }
        );
        if let Some((mask, value)) = p.flags {
            assert_eq!(
                h.flags & mask,
                value,
                "{}: /{rel} e_flags {:#x} lacks the platform's float ABI",
                p.name,
                h.flags
            );
        }
        n += 1;
    }
    n
}

/// `bareroot run LAYOUT --platform P [--entrypoint E] [-- ARGS]`.
fn bareroot_run(layout: &Path, platform: Option<&str>, entrypoint: Option<&str>) -> Command {
    let mut c = bareroot();
    c.arg("run").arg(layout);
    if let Some(p) = platform {
        c.args(["--platform", p]);
    }
    if let Some(e) = entrypoint {
        c.args(["--entrypoint", e]);
    }
    c.stdin(Stdio::null());
    c
}

fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn assert_output(o: &Output, want: &str, what: &str) {
    assert!(
        o.status.success() && stdout(o) == want,
        "{what}: want {want:?} and success, got {} with stdout {:?}, stderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A failed build: exit 2, one `bareroot: ...` line naming every needle.
fn assert_refused(o: &Output, needles: &[&str], what: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{what}: want exit 2, got {}; stdout {:?}, stderr:\n{err}",
        o.status,
        stdout(o)
    );
    assert!(
        err.starts_with("bareroot: ") && err.trim_end().lines().count() == 1,
        "{what}: want one `bareroot: ...` line, got:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "{what}: the message lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{what}: {err}");
}

fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

// ----------------------------------------------------------------- tests

#[test]
fn multiarch_layout_is_an_index_of_five_platforms_with_their_own_elf_files() {
    require("tar", "tar");
    let built = multiarch();
    let layout = &built.layout;
    assert_eq!(
        read_json(&layout.join("oci-layout")),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    let top = read_json(&layout.join("index.json"));
    let descs = top["manifests"].as_array().expect("index.json: manifests");
    assert_eq!(descs.len(), 1, "index.json: one descriptor: {top}");
    let desc = &descs[0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"], "latest",
        "the tag: {desc}"
    );
    assert_eq!(desc["digest"], built.digest.as_str(), "the printed digest");
    assert!(
        desc.get("platform").is_none(),
        "an index has no platform: {desc}"
    );

    let index = blob_json(layout, desc, INDEX);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX);
    let manifests = index["manifests"].as_array().expect("index: manifests");
    let keys: Vec<String> = manifests
        .iter()
        .map(|m| platform_key(&m["platform"]))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "the index lists platforms in sorted order");
    assert_eq!(
        keys,
        [
            "linux/386",
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/riscv64"
        ]
    );

    let tmp = tempdir();
    let mut counts = Vec::new();
    for (m, p) in manifests.iter().zip(&PLATFORMS) {
        let want = platform_json(p);
        assert_eq!(m["platform"], want, "index entry for {}", p.name);
        let manifest = blob_json(layout, m, MANIFEST);
        assert_eq!(manifest["schemaVersion"], 2);
        let config = blob_json(layout, &manifest["config"], CONFIG);
        for key in ["os", "architecture", "variant"] {
            assert_eq!(config[key], want[key], "{}: config {key}", p.name);
        }
        let layers = manifest["layers"].as_array().expect("manifest: layers");
        assert_eq!(layers.len(), 1, "{}: one layer", p.name);
        let layer = blob(layout, &layers[0], LAYER);
        let root = tmp.path().join(p.triplet);
        fs::create_dir(&root).unwrap();
        ok(Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&root));
        let n = check_elf_files(&root, p);
        counts.push(format!("{} {n}", p.name));
    }
    eprintln!("multiarch: ELF files per layer: {}", counts.join(", "));

    // Reproducible: a second build elsewhere gives the same index and blobs.
    let again = tmp.path().join("again");
    assert_eq!(
        support::build(&recipe("multiarch.toml"), &again),
        built.digest,
        "a second build of recipes/multiarch.toml"
    );
    assert_eq!(
        listing(&again.join("blobs/sha256")),
        listing(&layout.join("blobs/sha256"))
    );
}

#[test]
fn multiarch_runs_every_program_on_every_platform() {
    let built = multiarch();
    for p in &PLATFORMS {
        if let Some(q) = p.qemu {
            require(q, "qemu-user-static");
        }
        let bits = if p.class64 { 64 } else { 32 };
        let o = run(&mut bareroot_run(&built.layout, Some(p.name), None));
        assert_output(
            &o,
            &format!("hello from {} ({bits}-bit)\n", p.uname),
            &format!("{}: hello", p.name),
        );
        let o = run(&mut bareroot_run(
            &built.layout,
            Some(p.name),
            Some("/usr/bin/mathy"),
        ));
        assert_output(
            &o,
            "sqrt(1764) = 42, computed in a thread\n",
            &format!("{}: mathy", p.name),
        );
        let o = run(bareroot_run(
            &built.layout,
            Some(p.name),
            Some("/opt/greeter/bin/greeter"),
        )
        .args(["--", p.name]));
        assert_output(
            &o,
            &format!("greetings, {}, from a private library\n", p.name),
            &format!("{}: greeter", p.name),
        );
    }
}

#[test]
fn multiarch_debian_arm64_tools_run_and_pass_exit_codes_back() {
    require("qemu-aarch64-static", "qemu-user-static");
    let built = tools();
    let index = blob_json(
        &built.layout,
        &read_json(&built.layout.join("index.json"))["manifests"][0],
        INDEX,
    );
    let keys: Vec<String> = index["manifests"]
        .as_array()
        .expect("index: manifests")
        .iter()
        .map(|m| platform_key(&m["platform"]))
        .collect();
    assert_eq!(keys, ["linux/amd64", "linux/arm64/v8"]);

    for platform in ["linux/arm64", "linux/amd64"] {
        let o =
            run(bareroot_run(&built.layout, Some(platform), None).args(["--", "-n", "[1,2]|add"]));
        assert_output(&o, "3\n", &format!("{platform}: jq"));
        let o = with_stdin(
            &mut bareroot_run(&built.layout, Some(platform), Some("/usr/bin/sqlite3")),
            "select 6*7;\n",
        );
        assert_output(&o, "42\n", &format!("{platform}: sqlite3"));
        // The program's exit code is bareroot's, under qemu or not.
        let o = run(bareroot_run(&built.layout, Some(platform), None).args([
            "--",
            "-n",
            "\"stop\\n\" | halt_error(7)",
        ]));
        assert_eq!(
            o.status.code(),
            Some(7),
            "{platform}: jq halt_error(7): stderr:\n{}",
            stderr(&o)
        );
        let o = run(
            bareroot_run(&built.layout, Some(platform), Some("/usr/bin/jq"))
                .args(["--", "-e", "-n", "false"]),
        );
        assert_eq!(
            (o.status.code(), stdout(&o).as_str()),
            (Some(1), "false\n"),
            "{platform}: jq -e false: stderr:\n{}",
            stderr(&o)
        );
    }
    // No --platform: the host's image, with the recipe's entrypoint and cmd.
    let o = run(&mut bareroot_run(&built.layout, None, None));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("jq printed JSON");
    assert_eq!(v, json!({"tool": "jq"}));
}

#[test]
fn multiarch_closure_oracle_agrees_with_the_arm64_loader() {
    let qemu = require("qemu-aarch64-static", "qemu-user-static");
    let s = debian_arm64();
    let started = Instant::now();

    // Every dynamically linked ELF file, by its real path in the sysroot.
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for dir in [
        "usr/bin",
        "lib/aarch64-linux-gnu",
        "usr/lib/aarch64-linux-gnu",
    ] {
        for e in fs::read_dir(s.join(dir)).unwrap() {
            let real = fs::canonicalize(e.unwrap().path()).unwrap();
            if !real.is_file() {
                continue;
            }
            let Some(h) = elf_head(&fs::read(&real).unwrap()) else {
                continue;
            };
            assert_eq!((h.machine, h.class64), (183, true), "{}", real.display());
            if h.dynamic {
                files.insert(Path::new("/").join(real.strip_prefix(&s).unwrap()));
            }
        }
    }
    let programs = files.iter().filter(|f| f.starts_with("/usr/bin")).count();
    assert!(
        programs >= 2 && files.len() >= 20,
        "too few files: {files:?}"
    );

    let o = run(bareroot()
        .args([
            "closure",
            "--json",
            "--platform",
            "linux/arm64",
            "--sysroot",
        ])
        .arg(&s)
        .args(&files));
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "bareroot closure failed ({}):\n{}",
        o.status,
        stderr(&o)
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("closure --json");
    let report = report.as_array().expect("closure --json: an array");
    assert_eq!(report.len(), files.len());

    // A path as the loader names it (sysroot-absolute, or a host path inside
    // the sysroot) to its real path in the sysroot; a path outside it (qemu
    // falls back to the host's files) becomes a value that matches nothing.
    let real = |p: &str| -> String {
        let host = if Path::new(p).starts_with(&s) {
            PathBuf::from(p)
        } else {
            s.join(p.trim_start_matches('/'))
        };
        match fs::canonicalize(&host) {
            Ok(r) => match r.strip_prefix(&s) {
                Ok(inside) => format!("/{}", inside.display()),
                Err(_) => format!("<{p}: leaves the sysroot>"),
            },
            Err(e) => format!("<{p}: not in the sysroot: {e}>"),
        }
    };
    let ld = s.join("lib/ld-linux-aarch64.so.1");
    let rtld = real("/lib/ld-linux-aarch64.so.1");

    let mut disagree = Vec::new();
    let mut pairs = 0;
    for (file, entry) in files.iter().zip(report) {
        let name = file.display().to_string();
        assert_eq!(entry["file"], name.as_str(), "closure --json order");
        let mut ours = BTreeSet::new();
        let mut ours_missing = BTreeSet::new();
        if let Some(i) = entry["interpreter"].as_str() {
            ours.insert(real(i));
        }
        for lib in entry["libraries"].as_array().expect("libraries") {
            match lib["path"].as_str() {
                Some(p) => ours.insert(real(p)),
                None => ours_missing.insert(lib["soname"].as_str().unwrap().to_string()),
            };
        }

        // The real loader: a program in trace mode, a library through
        // `ld.so --list`. No host environment reaches the guest loader.
        let program = file.starts_with("/usr/bin");
        let mut cmd = Command::new(&qemu);
        cmd.env_clear().arg("-L").arg(&s);
        if program {
            cmd.env("LD_TRACE_LOADED_OBJECTS", "1")
                .arg(s.join(&name[1..]));
        } else {
            cmd.arg(&ld).arg("--list").arg(s.join(&name[1..]));
        }
        let o = run(&mut cmd);
        let text = stdout(&o);
        let mut theirs = BTreeSet::new();
        let mut theirs_missing = BTreeSet::new();
        for line in text.lines().map(str::trim) {
            let line = line.split(" (0x").next().unwrap();
            match line.split_once(" => ") {
                Some((soname, "not found")) => {
                    theirs_missing.insert(soname.to_string());
                }
                Some((_, path)) => {
                    theirs.insert(real(path));
                }
                // PT_INTERP, or the loader itself; not the vDSO.
                None if line.starts_with('/') => {
                    theirs.insert(real(line));
                }
                None => {}
            }
        }
        assert!(
            o.status.success() || !theirs_missing.is_empty(),
            "{name}: the arm64 loader failed ({}):\n{text}{}",
            o.status,
            stderr(&o)
        );
        if !program {
            // `ld.so --list` always runs the loader, whether or not the
            // library's closure needs it.
            ours.insert(rtld.clone());
            theirs.insert(rtld.clone());
        }
        if program {
            assert!(
                theirs.contains("/lib/aarch64-linux-gnu/libc.so.6"),
                "{name}: the loader's trace names no libc:\n{text}"
            );
        }
        pairs += theirs.len();
        if ours != theirs || ours_missing != theirs_missing {
            disagree.push(format!(
                "{name}:\n  bareroot: {ours:?} missing {ours_missing:?}\n  \
                 loader:   {theirs:?} missing {theirs_missing:?}\n  loader output:\n{text}"
            ));
        }
    }
    eprintln!(
        "closure oracle: {} arm64 files ({programs} programs, {} libraries), \
         {pairs} loaded objects, {} disagreements, {:.1}s",
        files.len(),
        files.len() - programs,
        disagree.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        disagree.is_empty(),
        "bareroot closure disagrees with the arm64 loader on {} of {} files:\n{}",
        disagree.len(),
        files.len(),
        disagree.join("\n")
    );
}

/// Debian's reference registry on a free local port, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let exe = require("docker-registry", "docker-registry");
        let dir = tempdir();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(exe)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !reg.answers() {
            if let Some(status) = reg.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port} within 20s:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        reg
    }

    /// `GET /v2/` answers 200.
    fn answers(&self) -> bool {
        let addr = ([127, 0, 0, 1], self.port).into();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn multiarch_index_survives_a_push_to_a_registry() {
    let skopeo = require("skopeo", "skopeo");
    let built = multiarch();
    let reg = Registry::start();
    let remote = format!("docker://127.0.0.1:{}/test/multiarch:latest", reg.port);
    let o = run(Command::new(&skopeo)
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", built.layout.display()))
        .arg(&remote)
        .stdin(Stdio::null()));
    assert!(
        o.status.success(),
        "skopeo copy failed ({}):\n{}\nregistry log:\n{}",
        o.status,
        stderr(&o),
        reg.log()
    );
    let o = run(Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&remote));
    assert!(
        o.status.success(),
        "skopeo inspect failed ({}):\n{}",
        o.status,
        stderr(&o)
    );
    let index: Value = serde_json::from_slice(&o.stdout).expect("the pushed index is JSON");
    assert_eq!(index["mediaType"], INDEX, "{index}");
    let platforms: Vec<Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["platform"].clone())
        .collect();
    assert_eq!(
        platforms,
        PLATFORMS.iter().map(platform_json).collect::<Vec<_>>()
    );
    assert_eq!(
        format!("sha256:{:x}", Sha256::digest(&o.stdout)),
        built.digest,
        "the registry's index is bareroot's, byte for byte"
    );
}

#[test]
fn multiarch_errors_binary_of_another_machine() {
    let tmp = tempdir();
    let root = fs::canonicalize(tmp.path()).unwrap();
    // The repository's x86-64 hello, relative to the recipe in `root`.
    let x86 = support::repo().join("recipes/multiarch/build/x86_64-linux-gnu/hello");
    let x86 = fs::canonicalize(&x86).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run recipes/multiarch/build.sh or scripts/test.sh",
            x86.display()
        )
    });
    let src = format!(
        "{}{}",
        "../".repeat(root.components().count() - 1),
        x86.strip_prefix("/").unwrap().display()
    );
    let recipes = [
        // Per platform: amd64 is right and built first; arm64 is wrong.
        format!(
            "name = \"wrong\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             [[binary]]\nsrc = {{ \"linux/amd64\" = \"{src}\", \"linux/arm64\" = \"{src}\" }}\n\
             dest = \"/usr/bin/hello\"\n"
        ),
        format!("name = \"wrong\"\nplatforms = [\"linux/arm64\"]\n[[binary]]\nsrc = \"{src}\"\n"),
    ];
    for (i, text) in recipes.iter().enumerate() {
        let r = root.join(format!("r{i}.toml"));
        fs::write(&r, text).unwrap();
        let before = listing(&root);
        let out = root.join("out");
        let o = run(bareroot().arg("build").arg(&r).arg("--output").arg(&out));
        assert_refused(
            &o,
            &["x86_64-linux-gnu/hello", "x86-64", "linux/arm64", "aarch64"],
            &format!("recipe:\n{text}"),
        );
        assert_eq!(listing(&root), before, "a failed build wrote nothing");
    }
}

#[test]
fn multiarch_errors_library_missing_from_the_sysroot() {
    let s = debian_arm64();
    let tmp = tempdir();
    let root = fs::canonicalize(tmp.path()).unwrap();
    let sys = root.join("sysroot");
    ok(Command::new("cp").arg("-a").arg(&s).arg(&sys));
    let libdir = sys.join("usr/lib/aarch64-linux-gnu");
    let mut removed = 0;
    for e in fs::read_dir(&libdir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with("libonig.so.5") {
            fs::remove_file(e.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "no libonig.so.5* in {}", libdir.display());

    let r = root.join("jq.toml");
    fs::write(
        &r,
        "name = \"jq\"\nplatforms = [\"linux/arm64\"]\n[[binary]]\nsrc = \"/usr/bin/jq\"\n",
    )
    .unwrap();
    let before = listing(&root);
    let o = run(bareroot()
        .arg("build")
        .arg(&r)
        .arg("--output")
        .arg(root.join("out"))
        .arg("--sysroot")
        .arg(format!("linux/arm64={}", sys.display())));
    assert_refused(
        &o,
        &["libonig.so.5", "libjq.so.1", "linux/arm64"],
        "jq for arm64 without libonig",
    );
    assert_eq!(listing(&root), before, "a failed build wrote nothing");

    // `closure` says the same: exit 1, a null path for the soname.
    let o = run(bareroot()
        .args([
            "closure",
            "--json",
            "--platform",
            "linux/arm64",
            "--sysroot",
        ])
        .arg(&sys)
        .arg("/usr/bin/jq"));
    assert_eq!(o.status.code(), Some(1), "closure: {}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("closure --json");
    let missing: Vec<&Value> = report[0]["libraries"]
        .as_array()
        .expect("libraries")
        .iter()
        .filter(|l| l["path"].is_null())
        .collect();
    assert_eq!(
        missing,
        [&json!({"soname": "libonig.so.5", "path": null})],
        "{report}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("libonig.so.5") && err.contains("libjq.so.1"),
        "closure stderr: {err}"
    );
}
