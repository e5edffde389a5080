//! The committed corpus of hostile inputs (tests/regressions/, written by
//! scripts/gen-regressions.py): ELF files broken the way published parser
//! bugs were triggered, and recipes that attack the TOML parser. Each must
//! end in the outcome its directory's EXPECT file names (a result or a
//! clean one-line error), within a time bound: never a panic, a crash or a
//! hang, in the library or through the command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;

/// (file, expected "ok" or "error", what is broken) from `dir/EXPECT`.
fn cases(dir: &Path, ext: &str) -> Vec<(PathBuf, String, String)> {
    let text = std::fs::read_to_string(dir.join("EXPECT")).unwrap();
    let cases: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, rest) = l.split_once(": ").unwrap();
            let (expect, why) = rest.split_once(" -- ").unwrap();
            assert!(matches!(expect, "ok" | "error"), "{l}");
            (
                dir.join(format!("{name}.{ext}")),
                expect.to_string(),
                why.to_string(),
            )
        })
        .collect();
    // Every file has a line, every line a file.
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    let mut listed: Vec<_> = cases.iter().map(|c| c.0.clone()).collect();
    listed.sort();
    assert_eq!(
        files,
        listed,
        "{}: files and EXPECT disagree",
        dir.display()
    );
    cases
}

/// Run `cmd` with a time bound; (exit code, stderr). A signal or the bound
/// fails the test.
fn bounded(cmd: &mut Command, what: &str, limit: Duration) -> (i32, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stderr read on its own thread, so a long message cannot fill the
    // pipe and stall the child.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
        err
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = reader.join().unwrap();
            let code = status
                .code()
                .unwrap_or_else(|| panic!("{what}: killed by a signal ({status}); stderr: {err}"));
            return (code, err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An error the way bareroot reports one: exit 2, one line starting with
/// "bareroot: ", no panic (a panic exits 101), naming one of `names`.
fn assert_clean_error(code: i32, err: &str, what: &str, names: &[&str]) {
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_eq!(code, 2, "{what}: exit code {code}, stderr: {err}");
    assert!(err.starts_with("bareroot: "), "{what}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err}"
    );
    assert!(err.len() < 2200, "{what}: a {}-byte message", err.len());
    assert!(
        names.iter().any(|n| err.contains(n)),
        "{what}: the error names none of {names:?}: {err}"
    );
}

#[test]
fn hostile_elf_files_end_as_expected() {
    let dir = repo().join("tests/regressions/elf");
    let cases = cases(&dir, "elf");
    assert!(cases.len() >= 20);
    let mut wrong = Vec::new();
    for (file, expect, why) in &cases {
        let what = format!("{} ({why})", file.display());
        // In the library, on a thread, so a hang fails instead of blocking.
        let bytes = std::fs::read(file).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(bareroot::loader::harness::analyze_untrusted(&bytes).map(|_| ()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{what}: the library did not finish: {e}"));
        if (got.is_ok()) != (expect == "ok") {
            wrong.push(format!(
                "{what}: library parse gave {got:?}, expected {expect}"
            ));
        }
        // Through the command line, against the host.
        let (code, err) = bounded(
            bareroot().arg("closure").arg("--json").arg(file),
            &what,
            Duration::from_secs(60),
        );
        match expect.as_str() {
            "ok" => {
                if code != 0 {
                    wrong.push(format!("{what}: closure failed: {err}"));
                }
            }
            _ => assert_clean_error(code, &err, &what, &[&file.display().to_string()]),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn hostile_recipes_are_refused_cleanly() {
    let dir = repo().join("tests/regressions/recipe");
    let tmp = tempdir();
    for (file, expect, why) in cases(&dir, "toml") {
        assert_eq!(expect, "error", "recipes in the corpus are all refused");
        let what = format!("{} ({why})", file.display());
        let out = tmp.path().join(file.file_stem().unwrap());
        let (code, err) = bounded(
            bareroot()
                .arg("build")
                .arg(&file)
                .arg("--output")
                .arg(&out)
                .arg("--quiet"),
            &what,
            Duration::from_secs(60),
        );
        // Parse errors name the recipe file; later ones the entry.
        assert_clean_error(
            code,
            &err,
            &what,
            &[&file.display().to_string(), "[[binary]] #1"],
        );
        assert!(!out.exists(), "{what}: an output was written");
    }
}
