//! The oracle: `bareroot closure` must name exactly the files glibc's own
//! loader opens. Every dynamically linked ELF program in the host's /usr/bin
//! and /usr/sbin is resolved by bareroot (one run over all of them) and by
//! `ldd` (the real ld.so in trace mode), and the two must agree, file by file,
//! on the set of real paths loaded and on the sonames not found. Small
//! programs built with `cc` pin down the missing-library and `$ORIGIN` cases.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::support::{bareroot, ok, require, run, stderr, stdout, tempdir};

// ------------------------------------------------------------ ELF triage

/// What the program headers of an ELF file say (read without goblin or
/// bareroot, so the oracle does not share the code it checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ElfHead {
    class64: bool,
    little_endian: bool,
    machine: u16,
    has_interp: bool,
    has_needed: bool,
}

/// `Ok(None)` when the file is not ELF.
fn read_elf_head(path: &Path) -> Result<Option<ElfHead>, String> {
    let fail = |m: &str| format!("{}: {m}", path.display());
    let f = fs::File::open(path).map_err(|e| fail(&e.to_string()))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(fail(&e.to_string())),
        }
    }
    if n < 4 || &head[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let class64 = match head[4] {
        1 => false,
        2 => true,
        _ => return Err(fail("bad ELF class")),
    };
    let little_endian = match head[5] {
        1 => true,
        2 => false,
        _ => return Err(fail("bad ELF data encoding")),
    };
    if n < if class64 { 64 } else { 52 } {
        return Err(fail("truncated ELF header"));
    }
    let u16_at = |b: &[u8], o: usize| {
        let a = [b[o], b[o + 1]];
        if little_endian {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if little_endian {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let a: [u8; 8] = b[o..o + 8].try_into().unwrap();
        if little_endian {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    };
    let word_at = |b: &[u8], o: usize| {
        if class64 {
            u64_at(b, o)
        } else {
            u64::from(u32_at(b, o))
        }
    };
    let machine = u16_at(&head, 18);
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(&head, 32), u16_at(&head, 54), u16_at(&head, 56))
    } else {
        (
            u64::from(u32_at(&head, 28)),
            u16_at(&head, 42),
            u16_at(&head, 44),
        )
    };
    let (phentsize, phnum) = (usize::from(phentsize), usize::from(phnum));
    if phnum > 0 && phentsize < if class64 { 56 } else { 32 } {
        return Err(fail("program header entries too small"));
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.read_exact_at(&mut ph, phoff)
        .map_err(|e| fail(&format!("program headers: {e}")))?;
    let mut out = ElfHead {
        class64,
        little_endian,
        machine,
        has_interp: false,
        has_needed: false,
    };
    for p in ph.chunks(phentsize) {
        const PT_DYNAMIC: u32 = 2;
        const PT_INTERP: u32 = 3;
        let (offset, filesz) = if class64 {
            (u64_at(p, 8), u64_at(p, 32))
        } else {
            (u64::from(u32_at(p, 4)), u64::from(u32_at(p, 16)))
        };
        match u32_at(p, 0) {
            PT_INTERP => out.has_interp = true,
            PT_DYNAMIC => {
                let mut dynamic = vec![0u8; filesz.min(1 << 20) as usize];
                f.read_exact_at(&mut dynamic, offset)
                    .map_err(|e| fail(&format!("dynamic section: {e}")))?;
                let step = if class64 { 16 } else { 8 };
                for d in dynamic.chunks_exact(step) {
                    match word_at(d, 0) {
                        0 => break,                 // DT_NULL
                        1 => out.has_needed = true, // DT_NEEDED
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(out))
}

/// What a file found in a bin directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// ELF of the host's class and machine with PT_INTERP or DT_NEEDED.
    Dynamic,
    /// ELF with neither (static, static-pie).
    Static,
    /// ELF for another class or machine: neither ldd nor the host loader apply.
    Foreign,
    /// Starts with "#!".
    Script,
    /// Anything else (data, unreadable).
    Other,
}

fn host_elf() -> ElfHead {
    read_elf_head(Path::new("/proc/self/exe"))
        .unwrap()
        .expect("the test binary is ELF")
}

fn classify(path: &Path, host: &ElfHead) -> Kind {
    match read_elf_head(path) {
        Ok(Some(h)) => {
            if (h.class64, h.little_endian, h.machine)
                != (host.class64, host.little_endian, host.machine)
            {
                Kind::Foreign
            } else if h.has_interp || h.has_needed {
                Kind::Dynamic
            } else {
                Kind::Static
            }
        }
        Ok(None) => {
            let mut two = [0u8; 2];
            let script = fs::File::open(path)
                .and_then(|f| f.read_exact_at(&mut two, 0))
                .is_ok()
                && &two == b"#!";
            if script {
                Kind::Script
            } else {
                Kind::Other
            }
        }
        Err(_) => Kind::Other,
    }
}

/// The regular files of the directories, by real path, deduplicated, with
/// their kind.
fn bin_files(dirs: &[&str]) -> BTreeMap<PathBuf, Kind> {
    let host = host_elf();
    let mut files = BTreeMap::new();
    for dir in dirs {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let Ok(real) = fs::canonicalize(&p) else {
                continue; // a dangling symlink
            };
            if files.contains_key(&real) || !fs::metadata(&real).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let kind = classify(&real, &host);
            files.insert(real, kind);
        }
    }
    files
}

// ------------------------------------------------------- both resolvers

/// What one tool says a file loads: real paths, and sonames not found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Loads {
    paths: BTreeSet<PathBuf>,
    missing: BTreeSet<String>,
}

fn real(p: &str) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p))
}

/// The ld.so trace of a batch of files. ldd prints a "file:" header before
/// each file's lines when given more than one.
fn ldd(files: &[PathBuf]) -> Result<Vec<Loads>, String> {
    let mut cmd = Command::new("ldd");
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .args(files);
    let o = run(&mut cmd);
    let text = stdout(&o);
    let mut sections: Vec<Option<Loads>> = vec![None; files.len()];
    let mut current: Option<usize> = if files.len() == 1 { Some(0) } else { None };
    let mut next = 0;
    for line in text.lines() {
        if !line.starts_with('\t') {
            let expected = files.get(next).map(|f| format!("{}:", f.display()));
            if files.len() > 1 && expected.as_deref() == Some(line) {
                current = Some(next);
                sections[next] = Some(Loads::default());
                next += 1;
                continue;
            }
            return Err(format!("ldd: unexpected line {line:?}"));
        }
        let Some(i) = current else {
            return Err(format!("ldd: line before any header: {line:?}"));
        };
        let loads = sections[i].get_or_insert_with(Loads::default);
        let l = line.trim();
        if l.starts_with("linux-vdso.so") || l.starts_with("linux-gate.so") {
            continue;
        }
        if let Some((name, rest)) = l.split_once(" => ") {
            let rest = rest.trim();
            if rest == "not found" {
                loads.missing.insert(name.to_string());
            } else {
                let path = rest.rsplit_once(" (0x").map_or(rest, |(p, _)| p).trim();
                if !path.starts_with('/') {
                    return Err(format!("ldd {}: cannot parse {line:?}", files[i].display()));
                }
                loads.paths.insert(real(path));
            }
        } else if let Some((path, _)) = l.rsplit_once(" (0x") {
            if !path.starts_with('/') {
                return Err(format!("ldd {}: cannot parse {line:?}", files[i].display()));
            }
            loads.paths.insert(real(path));
        } else {
            // "statically linked", "not a dynamic executable", ...
            return Err(format!("ldd {}: {l}", files[i].display()));
        }
    }
    sections
        .into_iter()
        .zip(files)
        .map(|(s, f)| {
            s.ok_or_else(|| {
                format!(
                    "ldd printed nothing for {} (stderr: {})",
                    f.display(),
                    stderr(&o).trim()
                )
            })
        })
        .collect()
}

/// ldd over many files, in batches spread over the CPUs.
fn ldd_all(files: &[PathBuf]) -> BTreeMap<PathBuf, Result<Loads, String>> {
    let chunks: Vec<&[PathBuf]> = files.chunks(48).collect();
    let next = Mutex::new(0usize);
    let results = Mutex::new(BTreeMap::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(chunk) = chunks.get(i) else { break };
                let out = ldd(chunk);
                let mut r = results.lock().unwrap();
                for (j, f) in chunk.iter().enumerate() {
                    let one = match &out {
                        Ok(v) => Ok(v[j].clone()),
                        Err(e) => Err(e.clone()),
                    };
                    r.insert(f.clone(), one);
                }
            });
        }
    });
    results.into_inner().unwrap()
}

/// bareroot's view from `closure --json`: {interpreter} ∪ library paths, and
/// the sonames whose path is null.
fn parse_closure_json(text: &str) -> BTreeMap<String, Loads> {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("closure --json printed invalid JSON ({e}):\n{text}"));
    let arr = v.as_array().expect("closure --json prints an array");
    let mut out = BTreeMap::new();
    for entry in arr {
        let file = entry["file"]
            .as_str()
            .expect("file is a string")
            .to_string();
        let mut loads = Loads::default();
        match &entry["interpreter"] {
            Value::String(i) => {
                loads.paths.insert(real(i));
            }
            Value::Null => {}
            other => panic!("{file}: interpreter is {other}"),
        }
        for lib in entry["libraries"]
            .as_array()
            .expect("libraries is an array")
        {
            let soname = lib["soname"].as_str().expect("soname is a string");
            match &lib["path"] {
                Value::String(p) => {
                    loads.paths.insert(real(p));
                }
                Value::Null => {
                    loads.missing.insert(soname.to_string());
                }
                other => panic!("{file}: {soname}: path is {other}"),
            }
        }
        out.insert(file, loads);
    }
    out
}

/// `bareroot closure --json` once over all `files`; checks the exit code
/// against what it reports missing.
fn bareroot_all(files: &[PathBuf]) -> (BTreeMap<String, Loads>, Output) {
    let o = run(bareroot().arg("closure").arg("--json").args(files));
    let code = o.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "bareroot closure failed ({}):\n{}",
        o.status,
        stderr(&o)
    );
    let parsed = parse_closure_json(&stdout(&o));
    let any_missing = parsed.values().any(|l| !l.missing.is_empty());
    assert_eq!(
        code == Some(1),
        any_missing,
        "exit code {code:?} but missing libraries: {any_missing}\nstderr:\n{}",
        stderr(&o)
    );
    (parsed, o)
}

fn show(set: &BTreeSet<impl std::fmt::Debug>) -> String {
    let v: Vec<String> = set.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", v.join(", "))
}

/// Compare per file; the disagreements, one line each.
fn compare(
    files: &[PathBuf],
    ldd: &BTreeMap<PathBuf, Result<Loads, String>>,
    ours: &BTreeMap<String, Loads>,
) -> Vec<String> {
    let mut bad = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let theirs = match ldd.get(f) {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                bad.push(format!("{name}: ldd failed: {e}"));
                continue;
            }
            None => {
                bad.push(format!("{name}: not run through ldd"));
                continue;
            }
        };
        let Some(mine) = ours.get(&name) else {
            bad.push(format!("{name}: missing from bareroot's output"));
            continue;
        };
        if theirs == mine {
            continue;
        }
        let only_ldd: BTreeSet<_> = theirs.paths.difference(&mine.paths).collect();
        let only_ours: BTreeSet<_> = mine.paths.difference(&theirs.paths).collect();
        let miss_ldd: BTreeSet<_> = theirs.missing.difference(&mine.missing).collect();
        let miss_ours: BTreeSet<_> = mine.missing.difference(&theirs.missing).collect();
        bad.push(format!(
            "{name}: only in ldd: {}; only in bareroot: {}; not found only per ldd: {}; not found only per bareroot: {}",
            show(&only_ldd),
            show(&only_ours),
            show(&miss_ldd),
            show(&miss_ours)
        ));
    }
    bad
}

/// Resolve `files` with both tools; the disagreements.
fn oracle(files: &[PathBuf]) -> Vec<String> {
    require("ldd", "libc-bin");
    let (ldd_results, (ours, _)) = std::thread::scope(|s| {
        let b = s.spawn(|| bareroot_all(files));
        let l = ldd_all(files);
        (l, b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    compare(files, &ldd_results, &ours)
}

#[test]
fn oracle_every_host_program_agrees_with_ldd() {
    require("ldd", "libc-bin");
    let start = Instant::now();
    let all = bin_files(&["/usr/bin", "/usr/sbin"]);
    let count = |k: Kind| all.values().filter(|&&v| v == k).count();
    let dynamic: Vec<PathBuf> = all
        .iter()
        .filter(|(_, &k)| k == Kind::Dynamic)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(
        dynamic.len() >= 20,
        "only {} dynamically linked ELF files in /usr/bin and /usr/sbin",
        dynamic.len()
    );
    let bad = oracle(&dynamic);
    println!(
        "oracle: {}/{} dynamically linked ELF files agree with ldd \
         (excluded: {} static ELF, {} scripts, {} foreign ELF, {} other; {} files in all) in {:.1}s",
        dynamic.len() - bad.len(),
        dynamic.len(),
        count(Kind::Static),
        count(Kind::Script),
        count(Kind::Foreign),
        count(Kind::Other),
        all.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "{} of {} files disagree with ldd:\n{}",
        bad.len(),
        dynamic.len(),
        bad.join("\n")
    );
}

#[test]
fn oracle_static_busybox_has_no_closure() {
    require("busybox", "busybox-static");
    let bb = Path::new("/bin/busybox");
    let kind = classify(bb, &host_elf());
    assert_eq!(
        kind,
        Kind::Static,
        "/bin/busybox is not static: install busybox-static (apt-get install busybox-static)"
    );

    let o = run(bareroot().arg("closure").arg(bb));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "/bin/busybox\n");
    assert_eq!(stderr(&o), "");

    let o = run(bareroot().arg("closure").arg("--json").arg(bb));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"file": "/bin/busybox", "interpreter": null, "libraries": []}])
    );

    // The real loader agrees that there is nothing to load.
    let o = run(Command::new("ldd")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .arg(bb));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd /bin/busybox: {said}"
    );
}

// ------------------------------------------------- programs built with cc

/// Compile `libzz.so.1` (soname libzz.so.1) into `dir/zzlib/` and a program
/// `dir/<name>` that calls it, linked with `-L dir/zzlib -lzz` and `extra`
/// flags (no rpath unless `extra` adds one). Returns the program.
pub(crate) fn cc_zz_program(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let cc = require("cc", "gcc");
    let lib_dir = dir.join("zzlib");
    let lib = lib_dir.join("libzz.so.1");
    if !lib.exists() {
        fs::create_dir_all(&lib_dir).unwrap();
        let src = lib_dir.join("zz.c");
        fs::write(&src, "int zz(void) { return 42; }\n").unwrap();
        ok(Command::new(&cc)
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg("-Wl,-soname,libzz.so.1")
            .arg(&src));
        std::os::unix::fs::symlink("libzz.so.1", lib_dir.join("libzz.so")).unwrap();
    }
    let main = dir.join(format!("{name}.c"));
    fs::write(
        &main,
        "int zz(void);\nint main(void) { return zz() == 42 ? 0 : 1; }\n",
    )
    .unwrap();
    let exe = dir.join(name);
    ok(Command::new(&cc)
        .arg("-o")
        .arg(&exe)
        .arg(&main)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lzz")
        .args(extra));
    exe
}

/// A temp dir by its real path, so paths printed by both tools compare equal.
fn real_tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempdir();
    let p = fs::canonicalize(t.path()).unwrap();
    (t, p)
}

#[test]
fn oracle_missing_library_is_reported_with_its_needer() {
    let (_t, dir) = real_tempdir();
    let exe = cc_zz_program(&dir, "app", &[]);
    let exe_s = exe.display().to_string();

    let o = run(bareroot().arg("closure").arg(&exe));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line per missing library:\n{err}");
    let line = lines[0];
    assert!(
        line.starts_with("bareroot: ")
            && line.contains("libzz.so.1")
            && line.contains(&format!("needed by {exe_s}"))
            && line.contains("not found"),
        "{line}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("{exe_s} (interpreter => ")),
        "{text}"
    );
    assert!(text.contains("\n    libzz.so.1 => not found\n"), "{text}");
    assert!(text.contains("\n    libc.so.6 => "), "{text}");

    let o = run(bareroot().arg("closure").arg("--json").arg(&exe));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let libs = v[0]["libraries"].as_array().unwrap();
    assert!(
        libs.contains(&serde_json::json!({"soname": "libzz.so.1", "path": null})),
        "{v:#}"
    );
    assert_eq!(v[0]["file"], exe_s.as_str());

    // The real loader: the same files found, the same soname missing.
    let bad = oracle(std::slice::from_ref(&exe));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let ldd = ldd(std::slice::from_ref(&exe)).unwrap();
    assert_eq!(
        ldd[0].missing,
        BTreeSet::from(["libzz.so.1".to_string()]),
        "ldd must not find libzz.so.1 either"
    );

    // A relative file is looked up on the host from the current directory.
    let o = run(bareroot()
        .current_dir(&dir)
        .arg("closure")
        .arg("--json")
        .arg("app"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["file"], "app");
    assert!(stderr(&o).contains("libzz.so.1"), "{}", stderr(&o));
}

#[test]
fn oracle_origin_finds_the_library_next_to_the_program() {
    let (_t, dir) = real_tempdir();
    // DT_RUNPATH (the linker's default here) and DT_RPATH.
    for (name, extra) in [
        (
            "runpath",
            &["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"][..],
        ),
        (
            "rpath",
            &["-Wl,-rpath,$ORIGIN", "-Wl,--disable-new-dtags"][..],
        ),
    ] {
        let bin = dir.join(name);
        fs::create_dir_all(&bin).unwrap();
        let exe = cc_zz_program(&dir, &format!("{name}/app"), extra);
        fs::copy(dir.join("zzlib/libzz.so.1"), bin.join("libzz.so.1")).unwrap();
        let want = bin.join("libzz.so.1").display().to_string();

        // The program really runs: the loader finds libzz through $ORIGIN.
        let o = run(Command::new(&exe)
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("LD_PRELOAD"));
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));

        let o = run(bareroot().arg("closure").arg("--json").arg(&exe));
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{name}");
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let zz: Vec<&Value> = v[0]["libraries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["soname"] == "libzz.so.1")
            .collect();
        assert_eq!(zz.len(), 1, "{name}: {v:#}");
        assert_eq!(zz[0]["path"], want.as_str(), "{name}: {v:#}");
        assert!(v[0]["interpreter"].is_string(), "{name}: {v:#}");

        let text = ok(bareroot().arg("closure").arg(&exe));
        assert!(
            text.contains(&format!("\n    libzz.so.1 => {want}\n")),
            "{name}: {text}"
        );

        let bad = oracle(std::slice::from_ref(&exe));
        assert!(bad.is_empty(), "{name}: {}", bad.join("\n"));
    }
}
