//! Bad input: every class of error gets one lowercase line on stderr,
//! "bareroot: verb object: cause", naming the recipe entry or path at fault;
//! a non-zero exit; no panic; and nothing written: no output directory, no
//! staging directory left beside it, and an older layout at `--output` byte
//! for byte as it was.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::oracle::cc_zz_program;
use crate::support::{bareroot, ok, run, stderr, stdout, tempdir};

// --------------------------------------------------------------- helpers

/// A temp dir (by its real path) holding recipes, their inputs, and an older
/// image layout at `old/` to build over.
struct Case {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Case {
    fn new() -> Case {
        let tmp = tempdir();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let case = Case { _tmp: tmp, root };
        case.write("a.txt", "alpha\n");
        case.write("b.txt", "bravo\n");
        case.write("a-copy.txt", "alpha\n");
        case.write("script.sh", "#!/bin/sh\necho hello\n");
        fs::set_permissions(case.path("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        case.write("old.txt", "an older image\n");
        case.write(
            "old-recipe.toml",
            "name = \"old\"\n[[file]]\nsrc = \"old.txt\"\ndest = \"/old.txt\"\n",
        );
        ok(bareroot()
            .arg("build")
            .arg(case.path("old-recipe.toml"))
            .arg("--output")
            .arg(case.path("old"))
            .arg("--quiet"));
        assert!(case.path("old/oci-layout").is_file());
        case
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    /// Write `r.toml`.
    fn recipe(&self, text: &str) -> PathBuf {
        self.write("r.toml", text)
    }
}

/// Everything under `dir` (not `dir` itself): kind, mode, mtime and bytes or
/// link target of each entry.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("symlink -> {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(p.clone());
                format!("dir {:o} mtime {}.{}", m.mode(), m.mtime(), m.mtime_nsec())
            } else {
                let bytes = fs::read(&p).unwrap();
                format!(
                    "file {:o} mtime {}.{} {} bytes {:?}",
                    m.mode(),
                    m.mtime(),
                    m.mtime_nsec(),
                    bytes.len(),
                    bytes
                )
            };
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), what);
        }
    }
    out
}

fn assert_unchanged(before: &BTreeMap<PathBuf, String>, dir: &Path, what: &str) {
    let after = snapshot(dir);
    if &after == before {
        return;
    }
    let mut diff = Vec::new();
    for (p, v) in before {
        match after.get(p) {
            None => diff.push(format!("removed {}", p.display())),
            Some(w) if w != v => diff.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("created {}", p.display()));
    }
    panic!(
        "{what}: the failed command changed {}:\n{}",
        dir.display(),
        diff.join("\n")
    );
}

/// No `.bareroot-` staging directory beside `output`.
fn assert_no_staging(output: &Path) {
    let parent = output.parent().unwrap();
    if let Ok(rd) = fs::read_dir(parent) {
        let stray: Vec<String> = rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".bareroot-"))
            .collect();
        assert!(stray.is_empty(), "staging left behind: {stray:?}");
    }
}

/// The one-line message of a failed command, after checking its form.
fn failure(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success(),
        "{what}: succeeded but must fail\nstdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    assert!(
        o.status.code().is_some(),
        "{what}: killed by a signal ({})\n{err}",
        o.status
    );
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "stack backtrace",
        "(os error",
        "Os {",
        "kind: ",
    ] {
        assert!(!err.contains(bad), "{what}: {bad:?} on stderr:\n{err}");
    }
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: want exactly one line:\n{err}");
    let msg = lines[0]
        .strip_prefix("bareroot: ")
        .unwrap_or_else(|| panic!("{what}: not prefixed with `bareroot: `: {err}"));
    assert!(
        msg.starts_with(|c: char| c.is_ascii_lowercase()),
        "{what}: must start lowercase: {msg}"
    );
    assert!(
        msg.contains(": "),
        "{what}: want `verb object: cause`: {msg}"
    );
    assert!(
        !msg.chars().any(char::is_control),
        "{what}: raw control characters in the message: {msg:?}"
    );
    assert_eq!(stdout(o), "", "{what}: nothing on stdout");
    msg.to_string()
}

fn assert_contains(msg: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(msg.contains(n), "{what}: message lacks {n:?}:\n{msg}");
    }
}

/// `bareroot build <recipe> --output <output> <args>` with `env`, backtraces on.
fn build_cmd(recipe: &Path, output: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = bareroot();
    c.env("RUST_BACKTRACE", "1")
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(output)
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// The build must be refused with a message holding `needles`, writing
/// nothing: once into a fresh `--output`, once over the older layout.
fn refused_with(
    case: &Case,
    recipe: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    needles: &[&str],
) -> String {
    let before = snapshot(&case.root);
    let fresh = case.path("new");
    let o = run(&mut build_cmd(recipe, &fresh, args, env));
    let what = format!("build {} into a new directory", recipe.display());
    let msg = failure(&o, &what);
    assert_contains(&msg, needles, &what);
    assert!(!fresh.exists(), "{what}: {} was created", fresh.display());
    assert_no_staging(&fresh);
    assert_unchanged(&before, &case.root, &what);

    let old = case.path("old");
    let o = run(&mut build_cmd(recipe, &old, args, env));
    let what = format!("build {} over an older layout", recipe.display());
    let msg2 = failure(&o, &what);
    assert_contains(&msg2, needles, &what);
    assert_no_staging(&old);
    assert_unchanged(&before, &case.root, &what);
    msg
}

/// A recipe that must be refused.
fn recipe_refused(text: &str, needles: &[&str]) -> String {
    let case = Case::new();
    let r = case.recipe(text);
    refused_with(&case, &r, &[], &[], needles)
}

fn inspect(layout: &Path) -> Value {
    let text = ok(bareroot().arg("inspect").arg("--json").arg(layout));
    serde_json::from_str(&text).unwrap()
}

/// Every file entry of the single image in `layout`.
fn layer_files(report: &Value) -> Vec<Value> {
    let images = report[0]["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    images[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["files"].as_array().unwrap().clone())
        .collect()
}

// ------------------------------------------------------- recipe syntax

#[test]
fn errors_unknown_recipe_key_names_key_and_position() {
    let msg = recipe_refused(
        "name = \"x\"\nbogus = 1\n",
        &["r.toml", "bogus", "line 2, column 1"],
    );
    assert!(msg.starts_with("parse recipe "), "{msg}");
    recipe_refused(
        "name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndesst = \"/a\"\n",
        &["r.toml", "desst", "line 4, column 1"],
    );
    recipe_refused(
        "name = \"x\"\n[config]\nentrypont = [\"/x\"]\n",
        &["r.toml", "entrypont", "line 3, column 1"],
    );
}

#[test]
fn errors_toml_syntax_error_names_line_and_column() {
    recipe_refused("name = \"x\"\ntag = \n", &["r.toml", "line 2, column 7"]);
    recipe_refused("name = \"x\n", &["r.toml", "line 1, column"]);
    recipe_refused(
        "name = \"x\"\n[[file]\nsrc = \"a.txt\"\n",
        &["r.toml", "line 2, column"],
    );
}

#[test]
fn errors_missing_or_bad_name() {
    recipe_refused("tag = \"v1\"\n", &["r.toml", "missing field `name`"]);
    recipe_refused("name = \"Upper\"\n", &["r.toml", "name \"Upper\""]);
    recipe_refused("name = \"\"\n", &["r.toml", "name \"\""]);
}

#[test]
fn errors_bad_tag() {
    for tag in ["-v1", "has space", "", "a/b", &"t".repeat(129)] {
        recipe_refused(
            &format!("name = \"x\"\ntag = \"{tag}\"\n"),
            &["r.toml", &format!("tag {tag:?}")],
        );
    }
}

// ------------------------------------------------------------- dests

#[test]
fn errors_dest_escaping_the_root() {
    for dest in ["../../etc/x", "/a/../../b", "a/../../b", "/.."] {
        recipe_refused(
            &format!("name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"{dest}\"\n"),
            &["[[file]] #1 (a.txt)", &format!("{dest:?}"), "escapes"],
        );
    }
    recipe_refused(
        "name = \"x\"\n[[dir]]\ndest = \"/var/../../x\"\n",
        &["[[dir]] #1", "escapes"],
    );
    recipe_refused(
        "name = \"x\"\n[[symlink]]\ndest = \"../x\"\ntarget = \"/a\"\n",
        &["[[symlink]] #1", "escapes"],
    );
    recipe_refused(
        "name = \"x\"\n[[binary]]\nsrc = \"/usr/bin/true\"\ndest = \"../true\"\n",
        &["[[binary]] #1 (/usr/bin/true)", "escapes"],
    );
}

#[test]
fn errors_dest_naming_the_root() {
    for dest in ["", "/", "/.", "//", "/a/.."] {
        recipe_refused(
            &format!("name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"{dest}\"\n"),
            &["[[file]] #1 (a.txt)", "image root"],
        );
    }
    recipe_refused(
        "name = \"x\"\n[[dir]]\ndest = \"/\"\n",
        &["[[dir]] #1", "image root"],
    );
}

#[test]
fn errors_nul_in_dest() {
    recipe_refused(
        "name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/etc/a\\u0000b\"\n",
        &["[[file]] #1 (a.txt)", "NUL"],
    );
    recipe_refused(
        "name = \"x\"\n[[dir]]\ndest = \"/var/a\\u0000b\"\n",
        &["[[dir]] #1", "NUL"],
    );
    recipe_refused(
        "name = \"x\"\n[[symlink]]\ndest = \"/a\\u0000\"\ntarget = \"b\"\n",
        &["[[symlink]] #1", "NUL"],
    );
}

#[test]
fn errors_newline_in_a_name_keeps_the_message_on_one_line() {
    recipe_refused(
        "name = \"x\"\n[[dir]]\ndest = \"/x\\n/.wh.y\"\n",
        &["[[dir]] #1", "whiteout"],
    );
    let case = Case::new();
    let r = case.recipe("name = \"x\"\n[[file]]\nsrc = \"no\\nsuch\"\ndest = \"/a\"\n");
    refused_with(
        &case,
        &r,
        &[],
        &[],
        &["[[file]] #1", "no such file or directory"],
    );
}

#[test]
fn errors_whiteout_dest() {
    recipe_refused(
        "name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/etc/.wh.passwd\"\n",
        &["[[file]] #1 (a.txt)", ".wh.passwd", "whiteout"],
    );
    recipe_refused(
        "name = \"x\"\n[[dir]]\ndest = \"/.wh..wh..opq\"\n",
        &["[[dir]] #1", "whiteout"],
    );
}

#[test]
fn errors_same_dest_with_different_content_but_equal_content_merges() {
    let case = Case::new();
    let r = case.recipe(
        "name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/etc/x\"\n\
         [[file]]\nsrc = \"b.txt\"\ndest = \"/etc/x\"\n",
    );
    let msg = refused_with(
        &case,
        &r,
        &[],
        &[],
        &[
            "/etc/x",
            "wanted twice",
            "different content",
            "[[file]] #1 (a.txt)",
            "[[file]] #2 (b.txt)",
            "linux/amd64",
        ],
    );
    assert!(msg.starts_with("build image x for linux/amd64: "), "{msg}");

    // Different files with the same bytes (and the same file twice) are one entry.
    let r = case.recipe(
        "name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/etc/x\"\n\
         [[file]]\nsrc = \"a-copy.txt\"\ndest = \"/etc/x\"\n\
         [[file]]\nsrc = \"a.txt\"\ndest = \"/etc/x\"\n",
    );
    let out = case.path("dedup");
    ok(&mut build_cmd(&r, &out, &["--quiet"], &[]));
    let files = layer_files(&inspect(&out));
    let x: Vec<&Value> = files.iter().filter(|f| f["path"] == "/etc/x").collect();
    assert_eq!(x.len(), 1, "{files:#?}");
    assert_eq!(x[0]["size"], 6);
    assert_eq!(x[0]["type"], "file");
}

// ----------------------------------------------------------- binaries

#[test]
fn errors_binary_that_is_not_elf() {
    let case = Case::new();
    let script = case.path("script.sh").display().to_string();
    let r = case.recipe("name = \"x\"\n[[binary]]\nsrc = \"script.sh\"\n");
    refused_with(
        &case,
        &r,
        &[],
        &[],
        &["[[binary]] #1 (script.sh)", &script, "not an ELF file"],
    );
}

#[test]
fn errors_binary_that_does_not_exist() {
    let case = Case::new();
    let missing = case.path("nope").display().to_string();
    let r = case.recipe("name = \"x\"\n[[binary]]\nsrc = \"nope\"\n");
    refused_with(
        &case,
        &r,
        &[],
        &[],
        &[
            "[[binary]] #1 (nope)",
            &missing,
            "no such file or directory",
        ],
    );
    let r = case.recipe("name = \"x\"\n[[binary]]\nsrc = \"/usr/bin/bareroot-no-such-program\"\n");
    refused_with(
        &case,
        &r,
        &[],
        &[],
        &[
            "[[binary]] #1 (/usr/bin/bareroot-no-such-program)",
            "no such file or directory",
        ],
    );
}

#[test]
fn errors_binary_whose_library_is_missing() {
    let case = Case::new();
    let exe = cc_zz_program(&case.root, "app", &[]);
    let exe_s = exe.display().to_string();
    let r = case.recipe("name = \"x\"\n[[binary]]\nsrc = \"app\"\n");
    let msg = refused_with(
        &case,
        &r,
        &[],
        &[],
        &[
            "[[binary]] #1 (app)",
            "libzz.so.1",
            &format!("needed by {exe_s}"),
            "not found",
            "linux/amd64",
        ],
    );
    assert!(msg.starts_with("build image x for linux/amd64: "), "{msg}");
}

// ------------------------------------------------------ SOURCE_DATE_EPOCH

#[test]
fn errors_malformed_source_date_epoch() {
    let case = Case::new();
    let r = case.recipe("name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/a\"\n");
    for bad in ["abc", "-1", "", "1.5", " 7"] {
        refused_with(
            &case,
            &r,
            &[],
            &[("SOURCE_DATE_EPOCH", bad)],
            &["SOURCE_DATE_EPOCH", &format!("{bad:?}")],
        );
    }
}

#[test]
fn errors_valid_source_date_epoch_sets_created_and_every_mtime() {
    let case = Case::new();
    let r = case.recipe(
        "name = \"x\"\nepoch = 5\n\
         [[binary]]\nsrc = \"/usr/bin/true\"\n\
         [[file]]\nsrc = \"a.txt\"\ndest = \"/etc/a.txt\"\n\
         [[dir]]\ndest = \"/var/empty\"\n\
         [[symlink]]\ndest = \"/etc/link\"\ntarget = \"a.txt\"\n",
    );
    let check = |out: &Path, epoch: u64, created: &str| {
        let report = inspect(out);
        let config = &report[0]["images"][0]["config"];
        assert_eq!(config["created"], created, "{config:#}");
        for h in config["history"].as_array().unwrap() {
            assert_eq!(h["created"], created, "{config:#}");
        }
        let files = layer_files(&report);
        assert!(files.len() >= 8, "{files:#?}");
        for kind in ["file", "dir", "symlink"] {
            assert!(files.iter().any(|f| f["type"] == kind), "no {kind}");
        }
        for f in &files {
            assert_eq!(f["mtime"], epoch, "{f}");
        }
    };
    let out = case.path("sde");
    ok(&mut build_cmd(
        &r,
        &out,
        &["--quiet"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    check(&out, 1_700_000_000, "2023-11-14T22:13:20Z");
    // --epoch wins over SOURCE_DATE_EPOCH, which wins over the recipe.
    ok(&mut build_cmd(
        &r,
        &out,
        &["--quiet", "--epoch", "86400"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    check(&out, 86_400, "1970-01-02T00:00:00Z");
    ok(&mut build_cmd(&r, &out, &["--quiet"], &[]));
    check(&out, 5, "1970-01-01T00:00:05Z");
}

// ------------------------------------------------------------ --output

#[test]
fn errors_output_that_exists_and_is_not_a_layout() {
    let case = Case::new();
    let r = case.recipe("name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/a\"\n");
    case.write("mine/keep.txt", "precious\n");
    case.write("afile", "precious too\n");
    for (target, cause) in [
        ("mine", "is not an OCI image layout"),
        ("afile", "is not a directory"),
    ] {
        let before = snapshot(&case.root);
        let output = case.path(target);
        let o = run(&mut build_cmd(&r, &output, &[], &[]));
        let what = format!("build into {target}");
        let msg = failure(&o, &what);
        assert_contains(
            &msg,
            &[&format!("write image to {}", output.display()), cause],
            &what,
        );
        assert_no_staging(&output);
        assert_unchanged(&before, &case.root, &what);
    }
}

#[test]
fn errors_output_that_is_a_symlink() {
    let case = Case::new();
    let r = case.recipe("name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/a\"\n");
    fs::create_dir(case.path("empty")).unwrap();
    std::os::unix::fs::symlink("empty", case.path("to-empty")).unwrap();
    std::os::unix::fs::symlink("old", case.path("to-old")).unwrap();
    std::os::unix::fs::symlink("nowhere", case.path("dangling")).unwrap();
    for link in ["to-empty", "to-old", "dangling"] {
        let before = snapshot(&case.root);
        let output = case.path(link);
        let o = run(&mut build_cmd(&r, &output, &[], &[]));
        let what = format!("build into symlink {link}");
        let msg = failure(&o, &what);
        assert_contains(&msg, &[&output.display().to_string(), "symlink"], &what);
        assert_no_staging(&output);
        assert_unchanged(&before, &case.root, &what);
    }
}

#[test]
fn errors_failed_build_creates_no_parent_directories() {
    let case = Case::new();
    for (i, text) in [
        "name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/x\"\n[[file]]\nsrc = \"b.txt\"\ndest = \"/x\"\n",
        "name = \"x\"\nplatforms = [\"linux/vax\"]\n",
    ]
    .into_iter()
    .enumerate()
    {
        let r = case.recipe(text);
        let before = snapshot(&case.root);
        let output = case.path(&format!("parent{i}/deeper/img"));
        let o = run(&mut build_cmd(&r, &output, &[], &[]));
        let what = format!("build into {}", output.display());
        failure(&o, &what);
        assert_unchanged(&before, &case.root, &what);
    }
}

// ----------------------------------------------------------- --sysroot

#[test]
fn errors_bad_sysroot_argument() {
    let case = Case::new();
    let r = case.recipe("name = \"x\"\n[[file]]\nsrc = \"a.txt\"\ndest = \"/a\"\n");
    let afile = case.path("a.txt").display().to_string();
    let afile_arg = format!("linux/amd64={afile}");
    let cases: [(&str, Vec<&str>); 4] = [
        (
            "no-equals-sign",
            vec!["--sysroot", "no-equals-sign", "PLATFORM=DIR"],
        ),
        ("Linux/AMD64=/", vec!["--sysroot", "Linux/AMD64"]),
        (
            "linux/amd64=/nonexistent-sysroot",
            vec![
                "open sysroot /nonexistent-sysroot",
                "no such file or directory",
            ],
        ),
        (&afile_arg, vec![&afile, "not a directory"]),
    ];
    for (arg, needles) in cases {
        refused_with(&case, &r, &["--sysroot", arg], &[], &needles);
    }
}

// ----------------------------------------------------------- platforms

#[test]
fn errors_unsupported_platform() {
    recipe_refused(
        "name = \"x\"\nplatforms = [\"linux/vax\"]\n",
        &["linux/vax", "unsupported platform", "linux/amd64"],
    );
    recipe_refused(
        "name = \"x\"\nplatforms = [\"plan9/amd64\"]\n",
        &["plan9/amd64", "unsupported platform"],
    );
    // The supported platform's image is built first; nothing of it may stay.
    recipe_refused(
        "name = \"x\"\nplatforms = [\"linux/amd64\", \"linux/vax\"]\n\
         [[file]]\nsrc = \"a.txt\"\ndest = \"/a\"\n",
        &["linux/vax", "unsupported platform"],
    );
    recipe_refused(
        "name = \"x\"\nplatforms = [\"Linux/AMD64\"]\n",
        &["r.toml", "\"Linux/AMD64\"", "os/architecture"],
    );
    recipe_refused(
        "name = \"x\"\nplatforms = [\"linux\"]\n",
        &["r.toml", "\"linux\""],
    );
}
