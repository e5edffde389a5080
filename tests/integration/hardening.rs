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
fn declared_fifos_and_device_nodes_are_kept_and_sockets_never() {
    assert!(
        is_root(),
        "this test makes a device node with mknod and needs root"
    );
    let tmp = tempdir();
    let t = tmp.path().join("t");
    fs::create_dir_all(&t).unwrap();
    ok(Command::new("mkfifo").arg(t.join("pipe")));
    ok(Command::new("mknod")
        .arg(t.join("null"))
        .args(["c", "1", "3"]));
    let sock = t.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let r = tmp.path().join("r.toml");
    let recipe = |specials: &str| {
        format!("name = \"dev\"\n[[tree]]\nsrc = \"t\"\ndest = \"/t\"\nspecials = {specials}\n")
    };
    let img = tmp.path().join("img");
    // Declared or not, a socket cannot be stored; a device not declared is refused.
    for (specials, needle) in [
        (r#"["fifo", "char"]"#, "socket"),
        (r#"["fifo"]"#, "character device"),
    ] {
        if needle != "socket" {
            fs::remove_file(&sock).unwrap();
        }
        fs::write(&r, recipe(specials)).unwrap();
        let o = run(bareroot().arg("build").arg(&r).arg("--output").arg(&img));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(needle) && err.contains("[[tree]] #1"), "{err}");
        assert!(!img.exists());
    }
    // Declared: kept as a FIFO and a character device 1,3, mode 0666,
    // read from the directory entries only (nothing opens the FIFO).
    fs::write(&r, recipe(r#"["fifo", "char"]"#)).unwrap();
    let started = Instant::now();
    let first = build(&r, &img);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "blocked on the FIFO"
    );
    assert_eq!(build(&r, &tmp.path().join("again")), first);
    let report: serde_json::Value =
        serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(&img))).unwrap();
    let layer = report[0]["images"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let listing = ok(Command::new("tar")
        .arg("-tvzf")
        .arg(img.join("blobs/sha256").join(&layer[7..])));
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in:\n{listing}"))
            .to_string()
    };
    assert!(line("t/pipe").starts_with("prw-rw-rw- 0/0"), "{listing}");
    assert!(line("t/null").starts_with("crw-rw-rw- 0/0"), "{listing}");
    assert!(line("t/null").contains(" 1,3 "), "{listing}");
    let f = files(&img);
    assert_eq!(entry(&f, "/t/pipe")["type"], "fifo");
    assert_eq!(entry(&f, "/t/null")["type"], "char");
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
    let _mounted = Tmpfs::mount(&mnt, "size=512k");
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

/// A tmpfs mounted (with these options) on a new directory until dropped.
/// Needs root.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        ok(Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0"
}

/// The PAX records of each entry of a layout's (single, uncompressed or
/// gzip) layer: path → (key, value bytes).
fn pax_records(layout: &Path) -> std::collections::BTreeMap<String, Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| layout.join("blobs/sha256").join(&d[7..]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = &manifest["layers"][0];
    let bytes = fs::read(blob(layer["digest"].as_str().unwrap())).unwrap();
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut recs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                recs.push((x.key().unwrap().to_string(), x.value_bytes().to_vec()));
            }
        }
        out.insert(path, recs);
    }
    out
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of value.len() bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
}

#[test]
fn file_capabilities_and_xattrs_are_kept_only_when_declared() {
    let tmp = tempdir();
    let t = tmp.path();
    fs::copy(repo().join("recipes/hello/hello"), t.join("hello")).unwrap();
    fs::create_dir_all(t.join("tree")).unwrap();
    fs::write(t.join("tree/data"), "data\n").unwrap();
    // cap_net_bind_service=ep as the kernel stores it (vfs_cap_data v2).
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    set_xattr(&t.join("hello"), "security.capability", &cap);
    set_xattr(&t.join("hello"), "user.origin", b"built here");
    set_xattr(&t.join("tree/data"), "user.origin", b"tree file");
    let recipe = |extra_bin: &str, extra_tree: &str| {
        format!(
            "name = \"caps\"\n[[binary]]\nsrc = \"hello\"\n{extra_bin}\n\
             [[tree]]\nsrc = \"tree\"\ndest = \"/srv\"\n{extra_tree}\n"
        )
    };
    let r = t.join("r.toml");

    // Not declared: no xattr reaches the layer.
    fs::write(&r, recipe("", "")).unwrap();
    let plain = t.join("plain");
    build(&r, &plain);
    let recs = pax_records(&plain);
    assert!(recs.values().all(|v| v.is_empty()), "{recs:?}");

    // Declared: exactly those, as SCHILY.xattr records with the raw bytes.
    fs::write(
        &r,
        recipe(
            "xattrs = [\"security.capability\"]",
            "xattrs = [\"user.origin\"]",
        ),
    )
    .unwrap();
    let kept = t.join("kept");
    let first = build(&r, &kept);
    let recs = pax_records(&kept);
    assert_eq!(
        recs["usr/bin/hello"],
        vec![("SCHILY.xattr.security.capability".to_string(), cap.clone())]
    );
    assert_eq!(
        recs["srv/data"],
        vec![(
            "SCHILY.xattr.user.origin".to_string(),
            b"tree file".to_vec()
        )]
    );
    assert_eq!(build(&r, &t.join("again")), first, "reproducible");

    // GNU tar, an independent reader, restores the capability.
    let unpacked = t.join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(&kept))).unwrap();
    let layer = report[0]["images"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    ok(Command::new("tar")
        .arg("--xattrs")
        .arg("--xattrs-include=*")
        .arg("-xzf")
        .arg(kept.join("blobs/sha256").join(&layer[7..]))
        .arg("-C")
        .arg(&unpacked));
    require("getfattr", "attr");
    let got = run(Command::new("getfattr")
        .args(["--only-values", "-n", "security.capability"])
        .arg(unpacked.join("usr/bin/hello")));
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(got.stdout, cap, "the capability as GNU tar restores it");

    // SELinux labels are never copied; unknown namespaces are refused.
    for (name, needle) in [
        ("security.selinux", "never copied"),
        ("trusted.x", "only security.capability and user.*"),
    ] {
        fs::write(&r, recipe(&format!("xattrs = [\"{name}\"]"), "")).unwrap();
        let o = run(bareroot()
            .arg("build")
            .arg(&r)
            .arg("--output")
            .arg(t.join("refused")));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(
            err.contains(needle) && err.contains("[[binary]] #1"),
            "{err}"
        );
        assert!(!t.join("refused").exists());
    }
}

#[test]
fn unreadable_inputs_are_errors_naming_them() {
    assert!(
        is_root(),
        "this test drops to uid 65534 with setpriv and needs root"
    );
    let tmp = tempdir();
    let t = tmp.path();
    fs::set_permissions(t, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(t.join("tree/closed")).unwrap();
    fs::write(t.join("tree/closed/secret"), "x").unwrap();
    fs::write(t.join("locked"), "x").unwrap();
    fs::set_permissions(t.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(t.join("tree/closed"), fs::Permissions::from_mode(0o000)).unwrap();
    let out_dir = t.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    std::os::unix::fs::chown(&out_dir, Some(65534), Some(65534)).unwrap();
    for (text, needle) in [
        (
            "name = \"u\"\n[[file]]\nsrc = \"locked\"\ndest = \"/locked\"\n",
            t.join("locked"),
        ),
        (
            "name = \"u\"\n[[tree]]\nsrc = \"tree\"\ndest = \"/srv\"\n",
            t.join("tree/closed"),
        ),
    ] {
        let r = t.join("r.toml");
        fs::write(&r, text).unwrap();
        fs::set_permissions(&r, fs::Permissions::from_mode(0o644)).unwrap();
        let o = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_bareroot"))
            .arg("build")
            .arg(&r)
            .arg("--output")
            .arg(out_dir.join("img"))
            .env("BAREROOT_NO_CACHE", "1")
            .env("HOME", &out_dir));
        assert!(!o.status.success(), "{text}");
        let err = stderr(&o);
        assert!(
            err.contains(&needle.display().to_string()) && err.contains("ermission denied"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out_dir.join("img").exists());
    }
}

#[test]
fn a_read_only_output_fails_cleanly_and_keeps_the_previous_image() {
    assert!(
        is_root(),
        "this test mounts a tmpfs and needs root (CI runs as root)"
    );
    let tmp = tempdir();
    let mnt = tmp.path().join("ro");
    let _mounted = Tmpfs::mount(&mnt, "size=16m");
    let out = mnt.join("img");
    let previous = build(&repo().join("recipes/hello.toml"), &out);
    let before = tree_digest(&out);
    ok(Command::new("mount").args(["-o", "remount,ro"]).arg(&mnt));
    let o = run(bareroot()
        .arg("build")
        .arg(repo().join("recipes/hello-files.toml"))
        .arg("--output")
        .arg(&out));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("read-only file system"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(tree_digest(&out), before, "the previous image is untouched");
    let index = fs::read_to_string(out.join("index.json")).unwrap();
    assert!(index.contains(&previous), "{index}");
}

/// Every file under `dir` with its bytes, as one string (for "unchanged").
fn tree_digest(dir: &Path) -> String {
    let mut all = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        all.push(e.path().display().to_string());
        if e.file_type().is_file() {
            all.push(format!("{:?}", fs::read(e.path()).unwrap()));
        }
    }
    all.join("\n")
}

#[test]
fn digests_read_from_a_layout_are_checked_before_they_become_paths() {
    let tmp = tempdir();
    let t = tmp.path();
    // A decoy a traversal would reach: a valid manifest outside the layout.
    let decoy = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
        "layers": []
    });
    fs::write(t.join("decoy"), decoy.to_string()).unwrap();
    let bad = [
        "sha256:../../../decoy".to_string(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}/", "0".repeat(63)),
        format!("sha512:{}", "0".repeat(128)),
        "sha256:".to_string(),
    ];
    for (i, digest) in bad.iter().enumerate() {
        let layout = t.join(format!("layout-{i}/deep/er"));
        fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": digest, "size": 10,
                           "annotations": {"org.opencontainers.image.ref.name": "latest"}}]
        });
        fs::write(layout.join("index.json"), index.to_string()).unwrap();
        for cmd in [
            vec!["inspect".to_string()],
            vec!["push".to_string(), "127.0.0.1:9/x:y".to_string()],
            vec!["run".to_string()],
        ] {
            let o = run(bareroot().arg(&cmd[0]).arg(&layout).args(&cmd[1..]));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd:?} {digest}: {err}");
            assert!(err.contains("invalid digest"), "{cmd:?} {digest}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
    }
}

#[test]
fn an_elf_file_over_the_size_cap_is_refused_unread() {
    // A sparse file with a real ELF header, 3 GiB long (the cap is 2 GiB):
    // refused from its size, before any byte of it is mapped or read.
    let tmp = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempdir());
    let big = tmp.path().join("huge.so");
    let header = fs::read(repo().join("tests/regressions/elf/base.elf")).unwrap();
    fs::write(&big, &header).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let started = Instant::now();
    let o = run(bareroot().arg("closure").arg(&big));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("huge.so") && err.contains("larger than"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
