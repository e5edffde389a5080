//! Reproducibility: golden digests for recipes whose inputs are committed,
//! the same digest under a perturbed environment and perturbed inputs, and
//! SOURCE_DATE_EPOCH visible in `created` and every tar entry.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// `recipe digest` pairs from tests/golden/digests.txt.
fn goldens() -> BTreeMap<String, String> {
    let text = fs::read_to_string(repo().join("tests/golden/digests.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (r, d) = l.split_once(char::is_whitespace).expect("recipe digest");
            (r.to_string(), d.trim().to_string())
        })
        .collect()
}

#[test]
fn golden_digests_hold() {
    let goldens = goldens();
    assert!(goldens.len() >= 2, "at least two golden recipes");
    let tmp = tempdir();
    let mut drift = Vec::new();
    for (recipe, want) in &goldens {
        let got = build(
            &repo().join("recipes").join(recipe),
            &tmp.path().join(recipe),
        );
        if &got != want {
            drift.push(format!("{recipe}: golden {want}, built {got}"));
        }
    }
    assert!(
        drift.is_empty(),
        "image digests drifted from tests/golden/digests.txt (if the change is intended, \
         run scripts/regen-goldens.sh and commit the result):\n{}",
        drift.join("\n")
    );
}

/// Everything under `dir`: relative path → bytes (for comparing layouts).
fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A copy of the inputs of a recipe with a tree, a file, a relative binary
/// and a host binary (with its closure), with chosen metadata.
fn inputs(dir: &Path, mode: u32, mtime: i64, owner: u32, reverse: bool) -> PathBuf {
    let hello = repo().join("recipes/hello/hello");
    fs::create_dir_all(dir.join("tree/sub")).unwrap();
    let mut files = vec![
        ("tree/a.txt", "alpha\n"),
        ("tree/b.txt", "beta\n"),
        ("tree/sub/c.txt", "gamma\n"),
        ("tree/sub/d.sh", "#!/bin/sh\necho d\n"),
        ("app.conf", "x = 1\n"),
    ];
    if reverse {
        files.reverse();
    }
    for (p, text) in &files {
        fs::write(dir.join(p), text).unwrap();
    }
    fs::copy(&hello, dir.join("hello")).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("tree/link")).unwrap();
    set_metadata(dir, mode, mtime, owner);
    let recipe = dir.join("recipe.toml");
    fs::write(
        &recipe,
        r#"name = "perturbed"
[config]
entrypoint = ["/usr/bin/jq"]
labels = { b = "2", a = "1" }
[[binary]]
src = "/usr/bin/jq"
[[binary]]
src = "hello"
[[file]]
src = "app.conf"
dest = "/etc/app.conf"
[[tree]]
src = "tree"
dest = "/srv/tree"
[[dir]]
dest = "/tmp"
mode = "1777"
"#,
    )
    .unwrap();
    recipe
}

#[test]
fn same_digest_under_perturbation() {
    require("jq", "jq");
    let tmp = tempdir();
    let a_in = inputs(&tmp.path().join("a"), 0o644, 1_000_000_000, 0, false);
    inputs(&tmp.path().join("b"), 0o600, 1_500_000_123, 4321, true);

    let a_out = tmp.path().join("out-a");
    let first = build(&a_in, &a_out);

    // Different cwd (relative recipe and output paths), umask, TZ, locale.
    let b_out = tmp.path().join("out-b");
    let o = ok(bareroot()
        .current_dir(tmp.path().join("b"))
        .env("TZ", "Pacific/Chatham")
        .env("LC_ALL", "tr_TR.UTF-8")
        .env("LANG", "tr_TR.UTF-8")
        .arg("build")
        .arg("recipe.toml")
        .arg("--output")
        .arg("../out-b"));
    let second = last_line(&o);
    assert_eq!(
        first, second,
        "top digest must not depend on input metadata or environment"
    );
    assert_eq!(
        tree_bytes(&a_out),
        tree_bytes(&b_out),
        "layouts differ byte for byte"
    );

    // The umask of the build process must not matter either.
    let c_out = tmp.path().join("out-c");
    let s = ok(std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$0\" build \"$1\" --output \"$2\" --quiet")
        .arg(env!("CARGO_BIN_EXE_bareroot"))
        .arg(&a_in)
        .arg(&c_out)
        .env_remove("SOURCE_DATE_EPOCH"));
    assert_eq!(last_line(&s), first);

    // Modes are normalized from content: scripts and ELF 0755, data 0644.
    let report = inspect_json(&a_out);
    let files = files_of(&report);
    assert_eq!(files["/srv/tree/sub/d.sh"]["mode"], "0755");
    assert_eq!(files["/srv/tree/a.txt"]["mode"], "0644");
    assert_eq!(files["/usr/bin/hello"]["mode"], "0755");
    assert_eq!(files["/tmp"]["mode"], "1777");
    assert_eq!(files["/srv/tree/link"]["target"], "a.txt");
    for (path, f) in &files {
        assert_eq!(
            (f["uid"].as_u64(), f["gid"].as_u64()),
            (Some(0), Some(0)),
            "{path}"
        );
    }
}

fn inspect_json(layout: &Path) -> serde_json::Value {
    let s = ok(bareroot().arg("inspect").arg("--json").arg(layout));
    serde_json::from_str(&s).unwrap()
}

fn files_of(report: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    report[0]["images"][0]["layers"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

#[test]
fn source_date_epoch_reaches_config_and_every_entry() {
    let tmp = tempdir();
    let recipe = repo().join("recipes/hello-files.toml");
    let out = tmp.path().join("img");
    ok(bareroot()
        .env("SOURCE_DATE_EPOCH", "1600000000")
        .arg("build")
        .arg(&recipe)
        .arg("--output")
        .arg(&out));
    let report = inspect_json(&out);
    let config = &report[0]["images"][0]["config"];
    assert_eq!(config["created"], "2020-09-13T12:26:40Z");
    assert_eq!(config["history"][0]["created"], "2020-09-13T12:26:40Z");
    let files = files_of(&report);
    assert!(files.len() > 5);
    for (path, f) in &files {
        assert_eq!(f["mtime"].as_u64(), Some(1_600_000_000), "{path}");
    }

    // --epoch wins over SOURCE_DATE_EPOCH; the recipe's epoch is the fallback.
    ok(bareroot()
        .env("SOURCE_DATE_EPOCH", "1600000000")
        .arg("build")
        .arg(&recipe)
        .arg("--output")
        .arg(&out)
        .arg("--epoch")
        .arg("86400"));
    let report = inspect_json(&out);
    assert_eq!(
        report[0]["images"][0]["config"]["created"],
        "1970-01-02T00:00:00Z"
    );
    ok(bareroot()
        .arg("build")
        .arg(&recipe)
        .arg("--output")
        .arg(&out));
    let report = inspect_json(&out);
    // recipes/hello-files.toml says epoch = 1234567890.
    assert_eq!(
        report[0]["images"][0]["config"]["created"],
        "2009-02-13T23:31:30Z"
    );
    assert!(files_of(&report)
        .values()
        .all(|f| f["mtime"] == 1_234_567_890));
}

/// The version Cargo.lock pins for a package.
fn locked_version(name: &str) -> String {
    let lock = fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let at = lock
        .find(&format!("name = \"{name}\"\nversion = \""))
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
    let rest = &lock[at..];
    let v = rest.split('"').nth(3).unwrap();
    v.to_string()
}

/// The manifest of a single-platform layout.
fn manifest_of(layout: &Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = layout.join("blobs/sha256").join(&digest[7..]);
    serde_json::from_slice(&fs::read(blob).unwrap()).unwrap()
}

#[test]
fn manifests_record_the_version_and_the_compressor() {
    let tmp = tempdir();
    let zlib = locked_version("zlib-rs");
    let zstd = locked_version("zstd-sys");
    let zstd = zstd.split_once("+zstd.").unwrap().1.to_string();
    for (flag, want) in [
        (
            "gzip",
            format!("gzip level 3, zlib-rs {zlib}, 128 KiB blocks"),
        ),
        (
            "gzip:9",
            format!("gzip level 9, zlib-rs {zlib}, 128 KiB blocks"),
        ),
        ("zstd", format!("zstd level 3, zstd {zstd}, 2 MiB jobs")),
        ("none", "none".to_string()),
    ] {
        let out = tmp.path().join(flag);
        ok(bareroot()
            .arg("build")
            .arg(repo().join("recipes/hello.toml"))
            .arg("--output")
            .arg(&out)
            .arg("--compression")
            .arg(flag)
            .arg("--quiet"));
        let m = manifest_of(&out);
        let a = &m["annotations"];
        assert_eq!(
            a["dev.bareroot.version"],
            env!("CARGO_PKG_VERSION"),
            "{flag}"
        );
        assert_eq!(a["dev.bareroot.compression"], want.as_str(), "{flag}");
    }
}

/// Copy the tree at `from` to `to`: in reverse order when `reverse` (so
/// directories are created, and list, in another order), and with the
/// given (mode, mtime, owner) on everything when `meta` is set.
fn copy_tree(from: &Path, to: &Path, reverse: bool, meta: Option<(u32, i64, u32)>) {
    let mut entries: Vec<_> = walkdir::WalkDir::new(from)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .collect();
    if reverse {
        // Children before parents is impossible to create; reverse the
        // siblings instead, keeping parents first.
        entries.sort_by(|x, y| {
            let (px, py) = (x.path(), y.path());
            px.parent().cmp(&py.parent()).then(py.cmp(px))
        });
        entries.sort_by_key(|e| e.depth());
    }
    for e in &entries {
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        let t = e.file_type();
        if t.is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
    if let Some((mode, mtime, owner)) = meta {
        set_metadata(to, mode, mtime, owner);
    }
}

/// Give everything under `dir` (not following symlinks) this mode
/// (directories also get u+rwx), mtime and owner.
fn set_metadata(dir: &Path, mode: u32, mtime: i64, owner: u32) {
    for e in walkdir::WalkDir::new(dir).contents_first(true) {
        let e = e.unwrap();
        if e.path_is_symlink() {
            continue;
        }
        let m = if e.file_type().is_dir() {
            mode | 0o700
        } else {
            mode
        };
        fs::set_permissions(e.path(), fs::Permissions::from_mode(m)).unwrap();
        filetime::set_file_mtime(e.path(), filetime::FileTime::from_unix_time(mtime, 0)).unwrap();
        std::os::unix::fs::chown(e.path(), Some(owner), Some(owner)).unwrap();
    }
}

/// Every recipe in recipes/, built twice: once from a plain copy of
/// recipes/, once from a copy elsewhere (created in another order, with
/// other modes, mtimes and owners) under another clock (faketime), working
/// directory, umask, time zone, locale and --jobs. The top digests must be
/// equal; when one is not, the test says which entry differs.
#[test]
fn every_recipe_is_reproducible_across_the_matrix() {
    require("faketime", "faketime");
    let tmp = tempdir();
    let a = tmp.path().join("a/recipes");
    let b = tmp.path().join("elsewhere/deeper/recipes");
    copy_tree(&repo().join("recipes"), &a, false, None);
    copy_tree(
        &repo().join("recipes"),
        &b,
        true,
        Some((0o600, 1_234_567_890, 4321)),
    );
    // Recipes reach the test sysroots as ../target/test-sysroots/…
    for copy in [&a, &b] {
        std::os::unix::fs::symlink(repo().join("target"), copy.parent().unwrap().join("target"))
            .unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let out_a = tmp.path().join(format!("out-a-{name}"));
        let first = last_line(&ok(bareroot()
            .current_dir(&a)
            .arg("build")
            .arg(name)
            .arg("--output")
            .arg(&out_a)
            .arg("--quiet")));
        let out_b = tmp.path().join(format!("out-b-{name}"));
        let second = last_line(&ok(std::process::Command::new("sh")
            .arg("-c")
            .arg(
                "umask 077; exec faketime '2031-02-03 04:05:06' \"$0\" build \"$1\" \
                 --output \"$2\" --jobs 1 --quiet",
            )
            .arg(env!("CARGO_BIN_EXE_bareroot"))
            .arg(format!("recipes/{name}"))
            .arg(&out_b)
            .current_dir(b.parent().unwrap())
            .env("BAREROOT_NO_CACHE", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .env("TZ", "Asia/Kathmandu")
            .env("LC_ALL", "de_DE.UTF-8")
            .env("LANG", "de_DE.UTF-8")));
        if first != second {
            failures.push(format!(
                "{name}: {first} vs {second}\n{}",
                explain_layout_difference(&out_a, &out_b)
            ));
        }
        let _ = fs::remove_dir_all(&out_a);
        let _ = fs::remove_dir_all(&out_b);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The difference printer the matrix relies on finds real differences:
/// two builds one second of epoch apart differ in `created` and in the
/// first tar header.
#[test]
fn the_difference_printer_names_what_differs() {
    let tmp = tempdir();
    let recipe = repo().join("recipes/hello.toml");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (out, epoch) in [(&a, "0"), (&b, "1")] {
        ok(bareroot()
            .arg("build")
            .arg(&recipe)
            .arg("--output")
            .arg(out)
            .arg("--epoch")
            .arg(epoch)
            .arg("--quiet"));
    }
    let text = explain_layout_difference(&a, &b);
    assert!(
        text.contains(".created: \"1970-01-01T00:00:00Z\" vs \"1970-01-01T00:00:01Z\""),
        "{text}"
    );
    assert!(text.contains("differs in its header"), "{text}");
    assert_eq!(
        explain_layout_difference(&a, &a),
        "no difference found in index, manifests, configs or layers"
    );
}

/// A tree of many small files (and a few symlinks, an empty file, a host
/// program): every layout byte is the same with `--no-cache` on one thread
/// and on every CPU, and with the cache, on a miss, on a hit, after the
/// stat cache is damaged, and after every input's stamp changed but not
/// its content.
#[test]
fn a_many_file_tree_gives_the_same_bytes_across_jobs_and_cache_states() {
    use std::os::unix::fs::symlink;
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    for d in 0..40 {
        let dir = tree.join(format!("pkg{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let body = format!("# {d}.{f}\n{}\n", "x = 1\n".repeat((d * 7 + f) % 40));
            fs::write(dir.join(format!("mod{f:03}.py")), body).unwrap();
        }
        symlink(format!("mod{:03}.py", d % 100), dir.join("link.py")).unwrap();
    }
    fs::write(tree.join("empty"), b"").unwrap();
    fs::copy("/usr/bin/env", tree.join("env")).unwrap();
    let recipe = tmp.path().join("many.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"many\"\nepoch = 1700000000\n[[tree]]\nsrc = \"{}\"\ndest = \"/app\"\n",
            tree.display()
        ),
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    let build = |name: &str, args: &[&str]| {
        let out = tmp.path().join(name);
        ok(bareroot()
            .env_remove("BAREROOT_NO_CACHE")
            .env("BAREROOT_CACHE_DIR", &cache)
            .args(["build", "--quiet", "--output"])
            .arg(&out)
            .args(args)
            .arg(&recipe));
        tree_bytes(&out)
    };
    let want = build("one-thread", &["--no-cache", "--jobs", "1"]);
    assert!(want
        .keys()
        .any(|p| p.ends_with("sbom-linux-amd64.spdx.json")));
    let check = |name: &str, got: BTreeMap<PathBuf, Vec<u8>>| {
        let differ: Vec<&PathBuf> = want
            .keys()
            .chain(got.keys())
            .filter(|p| want.get(*p) != got.get(*p))
            .collect();
        assert!(differ.is_empty(), "{name}: {differ:?} differ");
    };
    check(
        "every CPU",
        build("all-threads", &["--no-cache", "--jobs", "0"]),
    );
    check("cache miss", build("miss", &[]));
    let stat = fs::read_dir(cache.join("stat")).unwrap().count();
    assert_eq!(stat, 1, "one stat cache file for the recipe");
    check("cache hit", build("hit", &["--jobs", "1"]));
    // A damaged stat cache is an empty one: every input is read again.
    for e in fs::read_dir(cache.join("stat")).unwrap() {
        let p = e.unwrap().path();
        let mut b = fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        fs::write(&p, b).unwrap();
    }
    check("damaged stat cache", build("damaged", &[]));
    // New stamps (rewritten in place, same bytes): hashed again, same image.
    for e in walkdir::WalkDir::new(&tree) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let bytes = fs::read(e.path()).unwrap();
            fs::write(e.path(), bytes).unwrap();
        }
    }
    check("new stamps", build("restamped", &[]));
}
