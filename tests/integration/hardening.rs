//! Hostile or unusual input: hard links, FIFOs, symlink loops, setuid
//! bits, and a full disk. Each ends in a correct image or one clear error,
//! never a hang, a panic or a half-written layout.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

fn files(layout: &Path) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(layout))).unwrap();
    report[0]["images"][0]["layers"][0]["files"].clone()
}

fn entry<'a>(files: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in the layer: {files}"))
}

#[test]
fn hard_links_become_link_entries_to_the_first_path() {
    let tmp = tempdir();
    let t = tmp.path().join("t");
    fs::create_dir_all(t.join("z")).unwrap();
    fs::create_dir_all(t.join("a")).unwrap();
    fs::write(t.join("z/orig"), "shared bytes\n").unwrap();
    fs::hard_link(t.join("z/orig"), t.join("a/link")).unwrap();
    fs::hard_link(t.join("z/orig"), t.join("b-link")).unwrap();
    let r = tmp.path().join("r.toml");
    fs::write(&r, "name = \"hl\"\n[[tree]]\nsrc = \"t\"\ndest = \"/t\"\n").unwrap();
    let out = tmp.path().join("img");
    let digest = build(&r, &out);
    let f = files(&out);
    // The first in path order holds the bytes; the others link to it.
    assert_eq!(entry(&f, "/t/a/link")["type"], "file");
    assert_eq!(entry(&f, "/t/a/link")["size"], 13);
    for p in ["/t/b-link", "/t/z/orig"] {
        assert_eq!(entry(&f, p)["type"], "hardlink", "{p}");
        assert_eq!(entry(&f, p)["size"], 0, "{p}");
        assert_eq!(entry(&f, p)["target"], "t/a/link", "{p}");
    }
    // Same image again, and the system tar extracts three equal files.
    assert_eq!(build(&r, &tmp.path().join("again")), digest);
    let x = tmp.path().join("x");
    fs::create_dir_all(&x).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("blobs/sha256").join(&m[7..])).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(out.join("blobs/sha256").join(&layer[7..]))
        .arg("-C")
        .arg(&x));
    for p in ["t/a/link", "t/b-link", "t/z/orig"] {
        assert_eq!(fs::read_to_string(x.join(p)).unwrap(), "shared bytes\n");
    }
}

#[test]
fn a_fifo_in_a_tree_is_refused_without_blocking() {
    let tmp = tempdir();
    let t = tmp.path().join("t");
    fs::create_dir_all(&t).unwrap();
    ok(Command::new("mkfifo").arg(t.join("pipe")));
    let r = tmp.path().join("r.toml");
    fs::write(
        &r,
        "name = \"fifo\"\n[[tree]]\nsrc = \"t\"\ndest = \"/t\"\n",
    )
    .unwrap();
    let start = Instant::now();
    let o = run(bareroot()
        .arg("build")
        .arg(&r)
        .arg("--output")
        .arg(tmp.path().join("img")));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the build blocked on the FIFO"
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("FIFO"), "{}", stderr(&o));
    assert!(!tmp.path().join("img").exists());
}

#[test]
fn a_symlink_loop_is_an_error() {
    let tmp = tempdir();
    let root = tmp.path().join("sysroot");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("b", root.join("usr/bin/a")).unwrap();
    std::os::unix::fs::symlink("a", root.join("usr/bin/b")).unwrap();
    let r = tmp.path().join("r.toml");
    fs::write(&r, "name = \"loop\"\n[[binary]]\nsrc = \"/usr/bin/a\"\n").unwrap();
    let o = run(bareroot()
        .arg("build")
        .arg(&r)
        .arg("--sysroot")
        .arg(format!("linux/amd64={}", root.display()))
        .arg("--output")
        .arg(tmp.path().join("img")));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("too many levels of symbolic links"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn setuid_bits_of_inputs_are_never_kept() {
    let tmp = tempdir();
    fs::copy(repo().join("recipes/hello/hello"), tmp.path().join("hello")).unwrap();
    fs::set_permissions(tmp.path().join("hello"), fs::Permissions::from_mode(0o6755)).unwrap();
    let r = tmp.path().join("r.toml");
    fs::write(
        &r,
        "name = \"suid\"\n[[binary]]\nsrc = \"hello\"\n[[file]]\nsrc = \"hello\"\ndest = \"/kept\"\nmode = \"4755\"\n",
    )
    .unwrap();
    let out = tmp.path().join("img");
    build(&r, &out);
    let f = files(&out);
    assert_eq!(entry(&f, "/usr/bin/hello")["mode"], "0755");
    assert_eq!(
        entry(&f, "/kept")["mode"],
        "4755",
        "only when the recipe says so"
    );
}

#[test]
fn a_full_disk_fails_cleanly() {
    assert!(
        is_root(),
        "this test mounts a small tmpfs and needs root (CI runs as root)"
    );
    let tmp = tempdir();
    let mnt = tmp.path().join("small");
    fs::create_dir_all(&mnt).unwrap();
    ok(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&mnt));
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let o = run(bareroot()
        .arg("build")
        .arg(repo().join("recipes/shell.toml"))
        .arg("--output")
        .arg(mnt.join("img")));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("No space left") || err.contains("no space left"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let left: Vec<_> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "nothing may be left on the full disk: {left:?}"
    );
}

fn is_root() -> bool {
    String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0"
}
