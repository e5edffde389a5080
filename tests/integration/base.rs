//! Base images (`[base]`, issue 13): images built on real Debian root
//! filesystems made by mmdebstrap (scripts/debian-base.sh, run by
//! scripts/test.sh into target/test-bases/), on OCI layouts, docker
//! archives and a loopback docker-registry with htpasswd auth. What a build
//! wrote is read back from the layout's bytes here (index, manifests,
//! configs, tar entries), run under podman and `bareroot run`, and read by
//! skopeo and umoci.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::distribution::Registry;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{self, bareroot, last_line, require, run, stderr, stdout, Podman};

/// The `--epoch` of these builds: not 0 and not mmdebstrap's clamp
/// (1686355200), so an mtime equal to it was set by bareroot.
const EPOCH: &str = "1700000000";

// ---------------------------------------------------------------- fixtures

/// `target/test-bases/NAME.tar`, made by scripts/debian-base.sh.
fn base_tar(name: &str) -> PathBuf {
    let p = support::repo()
        .join("target/test-bases")
        .join(format!("{name}.tar"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/test.sh (it makes it with \
         scripts/debian-base.sh, which needs mmdebstrap)",
        p.display()
    );
    p
}

fn rootfs(name: &str) -> String {
    format!("rootfs:{}", base_tar(name).display())
}

fn arm64_sysroot() -> PathBuf {
    let p = support::repo().join("target/test-sysroots/debian-arm64");
    assert!(
        p.join("usr/bin/jq").is_file(),
        "{} has no usr/bin/jq: run scripts/test.sh (scripts/debian-sysroot.sh makes it)",
        p.display()
    );
    p
}

fn dir() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| support::run_dir("base"))
}

/// A fresh directory under this process's run directory.
fn fresh(name: &str) -> PathBuf {
    let d = dir().join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Write a recipe file `name.toml` into `dir`.
fn recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(format!("{name}.toml"));
    fs::write(&p, text).unwrap();
    p
}

/// A `bareroot` command with its own cache directory and no credentials
/// but what the test gives it.
fn br(cache: &Path) -> Command {
    let mut c = bareroot();
    let home = cache.join("home");
    fs::create_dir_all(home.join("docker")).unwrap();
    fs::create_dir_all(home.join("run")).unwrap();
    c.env("XDG_CACHE_HOME", cache)
        .env_remove("BAREROOT_CACHE_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env("HOME", &home)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .stdin(Stdio::null());
    c
}

/// `bareroot build RECIPE -o OUT --epoch EPOCH [extra]`.
fn build_cmd(cache: &Path, recipe: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = br(cache);
    c.arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(out)
        .args(["--epoch", EPOCH])
        .args(extra);
    c
}

fn assert_success(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Build, assert success, return the digest (the last stdout line).
fn build_ok(cmd: &mut Command, what: &str) -> (String, Output) {
    let o = run(cmd);
    assert_success(&o, what);
    let d = last_line(&stdout(&o));
    assert!(
        d.starts_with("sha256:") && d.len() == 71,
        "{what}: the last stdout line is not a digest: {d:?}"
    );
    (d, o)
}

/// A failure as the CLI must report it: exit 2, one `bareroot: ` line,
/// and nothing at `out`.
fn assert_one_line_failure(o: &Output, out: &Path, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{what} must fail with exit code 2:\nstdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    assert!(
        err.lines().count() == 1 && err.starts_with("bareroot: ") && !err.contains("panicked"),
        "{what}: expected one `bareroot: ` line on stderr, got:\n{err}"
    );
    assert!(
        !out.exists(),
        "{what}: the failed build wrote {}",
        out.display()
    );
    err.trim_end().to_string()
}

/// The jq-on-bookworm image of recipes/on-debian.toml, built once (on the
/// tarball scripts/debian-base.sh made, through `--base`).
fn on_debian() -> &'static support::Built {
    static B: OnceLock<support::Built> = OnceLock::new();
    B.get_or_init(|| {
        let layout = dir().join("on-debian");
        let base = rootfs("bookworm-amd64");
        let (digest, _) = build_ok(
            &mut build_cmd(
                &dir().join("cache"),
                &support::repo().join("recipes/on-debian.toml"),
                &layout,
                &["--base", &base],
            ),
            "build recipes/on-debian.toml",
        );
        support::Built { layout, digest }
    })
}

/// jq on the bookworm base with extra `[base]` keys, stacked or squashed.
fn jq_on_bookworm(name: &str, base_keys: &str) -> PathBuf {
    recipe(
        &dir().join("recipes"),
        name,
        &format!(
            "name = \"{name}\"\ntag = \"latest\"\n\n[base]\nimage = \"{}\"\n{base_keys}\n\n\
             [config]\nentrypoint = [\"/usr/bin/jq\"]\n\n[[binary]]\nsrc = \"/usr/bin/jq\"\n",
            rootfs("bookworm-amd64")
        ),
    )
}

// ------------------------------------------------------- reading a layout

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    read_json(&blob_path(layout, digest))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The image manifests of a layout, by platform (`os/arch[/variant]`).
fn manifests(layout: &Path) -> BTreeMap<String, Value> {
    let index = read_json(&layout.join("index.json"));
    let mut out = BTreeMap::new();
    let mut todo: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    while let Some(desc) = todo.pop() {
        let v = blob_json(layout, desc["digest"].as_str().unwrap());
        if let Some(ms) = v["manifests"].as_array() {
            todo.extend(ms.iter().cloned());
            continue;
        }
        if v["layers"].is_null() {
            continue; // an artifact
        }
        let p = &desc["platform"];
        let mut name = format!(
            "{}/{}",
            p["os"].as_str().unwrap_or("?"),
            p["architecture"].as_str().unwrap_or("?")
        );
        if let Some(var) = p["variant"].as_str() {
            name = format!("{name}/{var}");
        }
        out.insert(name, v);
    }
    out
}

/// The one image manifest of a single-platform layout.
fn only_manifest(layout: &Path) -> Value {
    let ms = manifests(layout);
    assert_eq!(
        ms.len(),
        1,
        "{}: expected one image, got {:?}",
        layout.display(),
        ms.keys()
    );
    ms.into_values().next().unwrap()
}

fn layers(m: &Value) -> Vec<Value> {
    m["layers"]
        .as_array()
        .cloned()
        .expect("a manifest has layers")
}

fn config(layout: &Path, m: &Value) -> Value {
    blob_json(layout, m["config"]["digest"].as_str().unwrap())["config"].clone()
}

/// One tar entry, as written.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
}

/// The entries of a layer blob, in order, names without `./`.
fn layer_entries(layout: &Path, desc: &Value) -> Vec<Entry> {
    let bytes = fs::read(blob_path(layout, desc["digest"].as_str().unwrap())).unwrap();
    let media = desc["mediaType"].as_str().unwrap_or("");
    let tar_bytes = if media.ends_with("+gzip") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .expect("gunzip a layer");
        out
    } else if media.ends_with("+zstd") {
        zstd::decode_all(&bytes[..]).expect("unzstd a layer")
    } else {
        bytes
    };
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut out = Vec::new();
    for e in ar.entries().expect("a tar") {
        let mut e = e.expect("a tar entry");
        let h = e.header().clone();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Entry {
            path,
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
        });
    }
    out
}

fn find<'a>(entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .find(|e| e.path.trim_end_matches('/') == path)
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

fn has_file_named(entries: &[Entry], file: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.path.rsplit('/').next() == Some(file))
        .map(|e| e.path.clone())
        .collect()
}

/// `podman run --rm --network none [args] oci:NAME:latest [cmd]`, from the
/// layout's parent (podman names the image after the relative path).
fn podman_run(layout: &Path, args: &[&str], cmd: &[&str]) -> Output {
    let podman = Podman::get();
    let name = layout.file_name().unwrap().to_str().unwrap();
    run(podman
        .cmd()
        .current_dir(layout.parent().unwrap())
        .args(["run", "--rm", "--network", "none"])
        .args(args)
        .arg(format!("oci:{name}:latest"))
        .args(cmd)
        .stdin(Stdio::null()))
}

fn host_jq_version() -> String {
    let o = run(Command::new(require("jq", "jq")).arg("--version"));
    assert_success(&o, "jq --version on the host");
    stdout(&o).trim().to_string()
}

// ------------------------------------------------------------- the tests

#[test]
fn base_jq_on_bookworm_rootfs_stacks_a_layer_without_libc_and_runs() {
    let built = on_debian();
    let m = only_manifest(&built.layout);
    let ls = layers(&m);
    assert_eq!(ls.len(), 2, "the base's layer and ours: {m}");

    // The base's layer is the tarball's files; ours has jq and what
    // bookworm's minbase lacks, and nothing the base already has.
    let base = layer_entries(&built.layout, &ls[0]);
    assert!(
        !has_file_named(&base, "libc.so.6").is_empty() && find(&base, "etc/shadow").is_some(),
        "the base layer does not hold the bookworm tarball's files"
    );
    let top = layer_entries(&built.layout, &ls[1]);
    for f in [
        "usr/bin/jq",
        "usr/lib/x86_64-linux-gnu/libjq.so.1",
        "usr/lib/x86_64-linux-gnu/libonig.so.5",
    ] {
        assert!(
            top.iter().any(|e| e.path.starts_with(f)),
            "our layer lacks {f}: {:?}",
            names(&top)
        );
    }
    for lib in ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"] {
        assert_eq!(
            has_file_named(&top, lib),
            Vec::<String>::new(),
            "our layer copies {lib}, which the base provides"
        );
    }

    // The config and annotations follow both layers and name the base.
    let cfg_blob = blob_json(&built.layout, m["config"]["digest"].as_str().unwrap());
    assert_eq!(
        cfg_blob["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2),
        "diff_ids: {}",
        cfg_blob["rootfs"]
    );
    assert_eq!(
        cfg_blob["history"].as_array().map(Vec::len),
        Some(2),
        "history: {}",
        cfg_blob["history"]
    );
    let ann = &m["annotations"];
    assert!(
        ann["org.opencontainers.image.base.name"]
            .as_str()
            .is_some_and(|n| n.contains("bookworm-amd64.tar")),
        "base.name annotation: {ann}"
    );
    let tar_digest = sha256(&fs::read(base_tar("bookworm-amd64")).unwrap());
    assert!(
        ann["org.opencontainers.image.base.digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "base.digest annotation: {ann} (the tarball is {tar_digest})"
    );

    // It runs: under podman, libc from the base; and without an engine.
    let want = host_jq_version();
    let o = podman_run(&built.layout, &[], &[]);
    assert_success(&o, "podman run on-debian");
    assert_eq!(
        stdout(&o).trim(),
        want,
        "podman run of recipes/on-debian.toml"
    );
    let o = run(bareroot()
        .arg("run")
        .arg(&built.layout)
        .args(["--", "--version"]));
    assert_success(&o, "bareroot run on-debian");
    assert_eq!(
        stdout(&o).trim(),
        want,
        "bareroot run of recipes/on-debian.toml"
    );
}

#[test]
fn base_squash_with_remove_is_one_reproducible_layer_keeping_owners_and_modes() {
    let r = jq_on_bookworm("squashed", "squash = true\nremove = [\"/usr/share/doc\"]");
    let out1 = dir().join("squashed-1");
    let out2 = dir().join("squashed-2");
    let (d1, _) = build_ok(
        &mut build_cmd(&dir().join("cache-sq1"), &r, &out1, &[]),
        "squashed build",
    );
    // Another cache and output: nothing may carry over but the inputs.
    let (d2, _) = build_ok(
        &mut build_cmd(&dir().join("cache-sq2"), &r, &out2, &[]),
        "squashed build again",
    );
    assert_eq!(
        d1,
        d2,
        "two squashed builds differ:\n{}",
        support::explain_layout_difference(&out1, &out2)
    );

    let m = only_manifest(&out1);
    let ls = layers(&m);
    assert_eq!(ls.len(), 1, "squash = true gives one layer: {m}");
    let es = layer_entries(&out1, &ls[0]);

    // The base's documentation is gone; the copyright files of the packages
    // our layer adds are there.
    let doc: Vec<&str> = es
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| p.starts_with("usr/share/doc/") && *p != "usr/share/doc/")
        .collect();
    assert!(
        doc.contains(&"usr/share/doc/jq/copyright"),
        "our copyright files are missing: {doc:?}"
    );
    let ours = ["jq", "libjq1", "libonig5"];
    let stray: Vec<&&str> = doc
        .iter()
        .filter(|p| {
            !ours.iter().any(|o| {
                p.starts_with(&format!("usr/share/doc/{o}/"))
                    || **p == format!("usr/share/doc/{o}/")
            })
        })
        .collect();
    assert!(
        stray.is_empty(),
        "the base's /usr/share/doc survived the remove: {stray:?}"
    );

    // Base files keep their owners and modes; our files and theirs get the
    // epoch as mtime.
    let shadow = find(&es, "etc/shadow").expect("the base's /etc/shadow");
    assert_eq!(
        (shadow.mode & 0o7777, shadow.uid, shadow.gid),
        (0o640, 0, 42),
        "/etc/shadow's mode, owner and group"
    );
    let passwd = find(&es, "usr/bin/passwd").expect("the base's /usr/bin/passwd");
    assert_eq!(
        passwd.mode & 0o7777,
        0o4755,
        "/usr/bin/passwd is setuid in bookworm"
    );
    let bin = find(&es, "bin").expect("the base's /bin");
    assert_eq!(
        (bin.kind, bin.link.as_deref()),
        (tar::EntryType::Symlink, Some("usr/bin")),
        "/bin stays the usr-merge symlink"
    );
    assert!(
        find(&es, "usr/bin/jq").is_some(),
        "jq is in the squashed layer"
    );
    let epoch: u64 = EPOCH.parse().unwrap();
    let off: Vec<(&str, u64)> = es
        .iter()
        .filter(|e| e.mtime != epoch)
        .map(|e| (e.path.as_str(), e.mtime))
        .take(10)
        .collect();
    assert!(
        off.is_empty(),
        "entries whose mtime is not the epoch {epoch}: {off:?}"
    );

    // And the result runs.
    let o = run(bareroot().arg("run").arg(&out1).args(["--", "--version"]));
    assert_success(&o, "bareroot run of the squashed image");
    assert_eq!(stdout(&o).trim(), host_jq_version());
}

/// The base's applied tree is kept in the cache and used again: `[base]
/// remove` takes paths out of the build's view, never out of the stored
/// tree, and a stored tree whose files changed is unpacked again.
#[test]
fn a_base_is_unpacked_once_into_the_cache_and_a_changed_tree_is_unpacked_again() {
    let cache = fresh("cache-tree");
    let removing = jq_on_bookworm(
        "tree-remove",
        "squash = true\nremove = [\"/usr/share/doc\"]",
    );
    let keeping = jq_on_bookworm("tree-keep", "squash = true");
    let build = |r: &Path, out: &str| {
        build_ok(
            &mut build_cmd(&cache, r, &dir().join(out), &[]),
            &format!("build into {out}"),
        )
        .0
    };
    let first = build(&removing, "tree-1");

    let trees: Vec<PathBuf> = fs::read_dir(cache.join("bareroot/trees"))
        .expect("the cache has a trees directory")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(trees.len(), 1, "one stored tree: {trees:?}");
    let rootfs = trees[0].join("rootfs");
    let header = fs::read_to_string(trees[0].join("tree.json")).unwrap();
    assert!(
        header.starts_with("bareroot-tree-1 crc32="),
        "tree.json's first line: {:?}",
        header.lines().next()
    );
    assert!(
        rootfs.join("usr/share/doc/apt/copyright").is_file(),
        "[base] remove must not delete from the stored tree"
    );

    // The same build again, from the stored tree (the same files, not
    // unpacked again): the same bytes.
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    let os_release = rootfs.join("usr/lib/os-release");
    let stored = inode(&os_release);
    let again = build(&removing, "tree-2");
    assert_eq!(
        inode(&os_release),
        stored,
        "the stored tree was unpacked again"
    );
    assert_eq!(
        first,
        again,
        "a build from the stored tree differs:\n{}",
        support::explain_layout_difference(&dir().join("tree-1"), &dir().join("tree-2"))
    );

    // Another recipe on the same base sees what the first removed.
    build(&keeping, "tree-keep");
    let m = only_manifest(&dir().join("tree-keep"));
    let es = layer_entries(&dir().join("tree-keep"), &layers(&m)[0]);
    assert!(
        find(&es, "usr/share/doc/apt/copyright").is_some(),
        "a recipe without remove lost the base's /usr/share/doc"
    );

    // A stored file changed behind bareroot's back: not trusted, unpacked
    // again, and the image is what the base says.
    let victim = rootfs.join("etc/debian_version");
    let real = fs::read(&victim).unwrap();
    fs::write(&victim, b"tampered\n").unwrap();
    let healed = build(&removing, "tree-3");
    assert_eq!(first, healed, "a build over a changed stored tree differs");
    assert_eq!(
        fs::read(&victim).unwrap(),
        real,
        "the changed tree was not unpacked again"
    );
    assert_ne!(inode(&os_release), stored, "the changed tree was kept");
    // And a file added to it is noticed too.
    fs::write(rootfs.join("usr/lib/stray.so"), b"stray").unwrap();
    assert_eq!(build(&removing, "tree-4"), first);
    assert!(
        !rootfs.join("usr/lib/stray.so").exists(),
        "a file added to the stored tree survived"
    );
}

#[test]
fn base_stacked_remove_writes_whiteouts_that_run_and_podman_honour() {
    let r = jq_on_bookworm("removed", "remove = [\"/etc/motd\", \"/usr/share/man\"]");
    let out = dir().join("removed");
    build_ok(
        &mut build_cmd(&dir().join("cache"), &r, &out, &[]),
        "stacked build with remove",
    );
    let m = only_manifest(&out);
    let ls = layers(&m);
    assert_eq!(ls.len(), 2, "stacked: the base's layer and ours: {m}");
    let top = layer_entries(&out, &ls[1]);
    for wh in ["etc/.wh.motd", "usr/share/.wh.man"] {
        let e = find(&top, wh)
            .unwrap_or_else(|| panic!("no whiteout {wh} in our layer: {:?}", names(&top)));
        assert_eq!(
            e.kind,
            tar::EntryType::Regular,
            "{wh} is an empty regular file"
        );
        assert!(e.data.is_empty(), "{wh} is empty");
    }
    // The base's layer is untouched.
    let base = layer_entries(&out, &ls[0]);
    assert!(
        find(&base, "etc/motd").is_some(),
        "the base layer still has /etc/motd"
    );

    let o = run(bareroot().arg("run").arg(&out).args([
        "--entrypoint",
        "/bin/ls",
        "--",
        "/etc/motd",
        "/usr/share/man",
        "/etc/issue.net",
    ]));
    let (so, se) = (stdout(&o), stderr(&o));
    assert!(
        !o.status.success() && so.contains("/etc/issue.net") && !so.contains("motd"),
        "bareroot run ls: the removed paths must be gone and the rest there:\nstdout:\n{so}\nstderr:\n{se}"
    );
    assert!(
        se.contains("/etc/motd") && se.contains("/usr/share/man"),
        "ls names both removed paths as missing:\n{se}"
    );
    let o = podman_run(
        &out,
        &["--entrypoint", "/bin/ls"],
        &["/etc/motd", "/usr/share/man", "/etc/issue.net"],
    );
    let (so, se) = (stdout(&o), stderr(&o));
    assert!(
        !o.status.success()
            && so.contains("/etc/issue.net")
            && se.contains("/etc/motd")
            && se.contains("/usr/share/man"),
        "podman run ls: the removed paths must be gone:\nstdout:\n{so}\nstderr:\n{se}"
    );
}

#[test]
fn base_config_is_inherited_key_by_key_and_not_with_config_false() {
    let rdir = dir().join("recipes");
    let cache = dir().join("cache");
    let parent = recipe(
        &rdir,
        "config-parent",
        r#"name = "config-parent"
tag = "latest"
[config]
entrypoint = ["/usr/bin/jq"]
cmd = ["-n", "1"]
env = ["FOO=1", "PATH=/x"]
workdir = "/work"
user = "1000:1000"
labels = { "org.example.from" = "parent", "org.example.keep" = "yes" }
exposed_ports = ["8080/tcp"]
[[binary]]
src = "/usr/bin/jq"
"#,
    );
    let parent_out = dir().join("config-parent");
    build_ok(
        &mut build_cmd(&cache, &parent, &parent_out, &[]),
        "build the parent image",
    );
    let base = format!("oci:{}:latest", parent_out.display());

    let child = |name: &str, keys: &str| -> Value {
        let r = recipe(
            &rdir,
            name,
            &format!(
                "name = \"{name}\"\ntag = \"latest\"\n[base]\nimage = \"{base}\"\n{keys}\n\
                 [config]\nentrypoint = [\"/bin/true\"]\nlabels = {{ \"org.example.from\" = \"child\" }}\n\
                 [[file]]\nsrc = \"{}\"\ndest = \"/etc/child\"\n",
                rdir.join("config-parent.toml").display()
            ),
        );
        let out = dir().join(name);
        build_ok(
            &mut build_cmd(&cache, &r, &out, &[]),
            &format!("build {name}"),
        );
        let m = only_manifest(&out);
        assert_eq!(layers(&m).len(), 2, "{name}: the parent's layer and ours");
        config(&out, &m)
    };

    let c = child("config-inherit", "");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/true"]),
        "ours: {c}"
    );
    assert!(
        c["Cmd"].is_null() || c["Cmd"] == serde_json::json!([]),
        "entrypoint without cmd drops the base's Cmd: {c}"
    );
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"FOO=1") && env.contains(&"PATH=/x"),
        "the base's Env: {env:?}"
    );
    assert_eq!(c["WorkingDir"], "/work", "{c}");
    assert_eq!(c["User"], "1000:1000", "{c}");
    assert_eq!(c["Labels"]["org.example.keep"], "yes", "labels merged: {c}");
    assert_eq!(
        c["Labels"]["org.example.from"], "child",
        "our label wins: {c}"
    );
    assert!(
        c["ExposedPorts"]["8080/tcp"].is_object(),
        "exposed ports merged: {c}"
    );

    let c = child("config-none", "config = false");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default();
    assert!(
        !env.iter().any(|e| e.starts_with("FOO=") || *e == "PATH=/x"),
        "config = false inherits no Env: {env:?}"
    );
    assert!(
        c["WorkingDir"].as_str().unwrap_or("").is_empty(),
        "config = false: {c}"
    );
    assert!(
        c["User"].as_str().unwrap_or("").is_empty(),
        "config = false: {c}"
    );
    assert!(
        c["Labels"]["org.example.keep"].is_null(),
        "config = false: {c}"
    );
    assert!(
        c["ExposedPorts"].is_null() || c["ExposedPorts"].as_object().is_some_and(|o| o.is_empty()),
        "config = false: {c}"
    );
    assert_eq!(c["Labels"]["org.example.from"], "child", "{c}");
}

#[test]
fn base_symbol_versions_are_checked_against_the_base_libc() {
    // bookworm's jq needs GLIBC_2.34; bullseye has glibc 2.31.
    let r = recipe(
        &dir().join("recipes"),
        "on-bullseye",
        &format!(
            "name = \"on-bullseye\"\n[base]\nimage = \"{}\"\n[[binary]]\nsrc = \"/usr/bin/jq\"\n",
            rootfs("bullseye-amd64")
        ),
    );
    let out = dir().join("on-bullseye");
    let o = run(&mut build_cmd(&dir().join("cache"), &r, &out, &[]));
    let err = assert_one_line_failure(&o, &out, "jq from bookworm on a bullseye base");
    for part in [
        "/usr/bin/jq",
        "GLIBC_2.34",
        "libc.so.6",
        "bullseye-amd64.tar",
    ] {
        assert!(err.contains(part), "the error must name {part:?}: {err}");
    }
}

#[test]
fn base_two_platforms_each_take_their_own_base() {
    let sysroot = arm64_sysroot();
    let rdir = dir().join("recipes");
    let text = |image: &str| {
        format!(
            "name = \"two\"\ntag = \"latest\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
             [sysroot]\n\"linux/arm64\" = \"{}\"\n[base]\nimage = {image}\n\
             [config]\nentrypoint = [\"/usr/bin/jq\"]\n[[binary]]\nsrc = \"/usr/bin/jq\"\n",
            sysroot.display()
        )
    };
    let r = recipe(
        &rdir,
        "two",
        &text(&format!(
            "{{ \"linux/amd64\" = \"{}\", \"linux/arm64\" = \"{}\" }}",
            rootfs("bookworm-amd64"),
            rootfs("bookworm-arm64")
        )),
    );
    let out = dir().join("two");
    build_ok(
        &mut build_cmd(&dir().join("cache"), &r, &out, &[]),
        "two-platform build",
    );
    let index = read_json(&out.join("index.json"));
    let top = blob_json(&out, index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(
        top["manifests"]
            .as_array()
            .map(|a| a.iter().filter(|m| !m["platform"].is_null()).count()),
        Some(2),
        "an index over two manifests: {top}"
    );
    let ms = manifests(&out);
    let amd = ms
        .get("linux/amd64")
        .unwrap_or_else(|| panic!("no linux/amd64: {:?}", ms.keys()));
    let arm = ms
        .iter()
        .find(|(k, _)| k.starts_with("linux/arm64"))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no linux/arm64: {:?}", ms.keys()));
    let (la, lr) = (layers(amd), layers(arm));
    assert_eq!(
        (la.len(), lr.len()),
        (2, 2),
        "each platform: its base layer and ours"
    );
    assert_ne!(
        la[0]["digest"], lr[0]["digest"],
        "each platform has its own base layer"
    );
    for (plat, ls, loader) in [
        ("amd64", &la, "ld-linux-x86-64.so.2"),
        ("arm64", &lr, "ld-linux-aarch64.so.1"),
    ] {
        let base = layer_entries(&out, &ls[0]);
        assert!(
            !has_file_named(&base, loader).is_empty(),
            "{plat}: the base layer has {loader}"
        );
        let top = layer_entries(&out, &ls[1]);
        assert_eq!(
            has_file_named(&top, "libc.so.6"),
            Vec::<String>::new(),
            "{plat}: our layer copies libc"
        );
        let jq = find(&top, "usr/bin/jq").unwrap_or_else(|| panic!("{plat}: no jq in our layer"));
        // e_machine: 62 x86-64, 183 AArch64.
        let machine = u16::from_le_bytes([jq.data[18], jq.data[19]]);
        assert_eq!(
            machine,
            if plat == "amd64" { 62 } else { 183 },
            "{plat}: jq's ELF machine"
        );
    }
    // The arm64 image runs under qemu with the arm64 base's libc.
    require("qemu-aarch64-static", "qemu-user-static");
    let o =
        run(bareroot()
            .arg("run")
            .arg(&out)
            .args(["--platform", "linux/arm64", "--", "--version"]));
    assert_success(&o, "bareroot run --platform linux/arm64");
    assert!(
        stdout(&o).starts_with("jq-"),
        "arm64 jq --version: {}",
        stdout(&o)
    );

    // A table without one of the recipe's platforms.
    let r = recipe(
        &rdir,
        "two-missing",
        &text(&format!(
            "{{ \"linux/amd64\" = \"{}\" }}",
            rootfs("bookworm-amd64")
        )),
    );
    let out = dir().join("two-missing");
    let o = run(&mut build_cmd(&dir().join("cache"), &r, &out, &[]));
    let err = assert_one_line_failure(&o, &out, "a base table without linux/arm64");
    assert!(err.contains("linux/arm64"), "names the platform: {err}");

    // A single-platform base for a two-platform recipe.
    let single = dir().join("amd64-only");
    let o = run(br(&dir().join("cache"))
        .args(["pull", "--quiet", &rootfs("bookworm-amd64"), "--output"])
        .arg(&single));
    assert_success(&o, "bareroot pull of the amd64 rootfs");
    let src = format!("oci:{}", single.display());
    let r = recipe(&rdir, "two-single", &text(&format!("\"{src}\"")));
    let out = dir().join("two-single");
    let o = run(&mut build_cmd(&dir().join("cache"), &r, &out, &[]));
    let err = assert_one_line_failure(&o, &out, "a two-platform recipe on an amd64-only base");
    assert!(
        err.contains("linux/arm64") && err.contains("amd64-only"),
        "names the platform and the base: {err}"
    );
}

// ----------------------------------------------------------------- registry

const USER: &str = "puller";
const PASSWORD: &str = "Pw-base-7d1e-never-printed";

/// distribution.rs's docker-registry harness with htpasswd auth for this
/// file's user; the password file lives in `dir`.
fn registry_with_auth(dir: &Path) -> Registry {
    let htpasswd = require("htpasswd", "apache2-utils");
    let o = run(Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]));
    assert_success(&o, "htpasswd");
    let pw = dir.join("htpasswd");
    fs::write(&pw, &o.stdout).unwrap();
    Registry::start(Some(&pw))
}

fn auth_json(host: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    serde_json::json!({"auths": {host: {"auth": b}}}).to_string()
}

/// The registry's manifest bytes for a reference (skopeo, with creds).
fn registry_manifest(reference: &str) -> Vec<u8> {
    let o = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null()));
    assert_success(&o, &format!("skopeo inspect --raw {reference}"));
    o.stdout
}

#[test]
fn base_from_a_registry_by_tag_then_pinned_with_the_registry_stopped() {
    require("skopeo", "skopeo");
    let work = fresh("registry");
    let reg = registry_with_auth(&work);
    let host = reg.host();
    let auth = work.join("auth.json");
    fs::write(&auth, auth_json(&host)).unwrap();

    // The bookworm base as a layout, then on the registry twice: as an OCI
    // image and as Docker schema2.
    let layout = work.join("bookworm-layout");
    let o = run(br(&work.join("cache-pull"))
        .args(["pull", "--quiet", &rootfs("bookworm-amd64"), "--output"])
        .arg(&layout));
    assert_success(&o, "bareroot pull of the bookworm rootfs");
    let refs = [
        ("oci", format!("{host}/base/debian:bookworm-oci")),
        ("v2s2", format!("{host}/base/debian:bookworm")),
    ];
    for (format, reference) in &refs {
        let o = run(Command::new("skopeo")
            .args([
                "copy",
                "--format",
                format,
                "--dest-tls-verify=false",
                "--dest-creds",
            ])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{reference}"))
            .stdin(Stdio::null()));
        assert_success(
            &o,
            &format!("skopeo copy --format {format} to {reference}{}", reg.log()),
        );
    }

    let r = jq_on_bookworm("from-registry", "");
    let mut results = Vec::new();
    for (format, reference) in &refs {
        let raw = registry_manifest(reference);
        let manifest_digest = sha256(&raw);
        let remote: Value = serde_json::from_slice(&raw).unwrap();
        let cache = work.join(format!("cache-{format}"));
        let out = work.join(format!("by-tag-{format}"));
        let (digest, o) = build_ok(
            build_cmd(&cache, &r, &out, &["--base", reference]).env("REGISTRY_AUTH_FILE", &auth),
            &format!("build on {reference}"),
        );
        let err = stderr(&o);
        assert!(
            err.contains(&format!("base {reference}:")) && err.contains(&manifest_digest),
            "stderr must show the base and the digest it resolved to ({manifest_digest}):\n{err}"
        );
        let note = err
            .lines()
            .find(|l| l.contains("reproducible only when pinned"));
        assert!(
            note.is_some_and(|l| l.contains(&manifest_digest)),
            "a build from a bare tag notes that it is reproducible only when pinned, and how:\n{err}"
        );
        assert!(!err.contains(PASSWORD), "the password was printed:\n{err}");

        let m = only_manifest(&out);
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.digest"],
            manifest_digest.as_str(),
            "{m}"
        );
        assert!(
            m["annotations"]["org.opencontainers.image.base.name"]
                .as_str()
                .is_some_and(|n| n.contains("/base/debian:bookworm")),
            "base.name: {m}"
        );
        // The base's layers, byte for byte the registry's, as OCI media types.
        let ours = layers(&m);
        let theirs = layers(&remote);
        assert_eq!(
            ours.len(),
            theirs.len() + 1,
            "the base's layers and ours: {m}"
        );
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(
                a["digest"], b["digest"],
                "{format}: a base layer changed digest"
            );
            assert_eq!(a["size"], b["size"], "{format}: a base layer changed size");
            let bytes = fs::read(blob_path(&out, a["digest"].as_str().unwrap())).unwrap();
            assert_eq!(
                sha256(&bytes),
                a["digest"].as_str().unwrap(),
                "{format}: the blob's bytes"
            );
            assert_eq!(
                a["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
                "{format}: {a}"
            );
        }
        if *format == "v2s2" {
            assert_eq!(
                theirs[0]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "skopeo pushed a Docker schema2 image: {remote}"
            );
        }
        // Pushed to another repository of the registry the base came from:
        // the base's layer is mounted from the base's repository, not sent.
        if *format == "oci" {
            let o = run(br(&cache)
                .env("REGISTRY_AUTH_FILE", &auth)
                .arg("push")
                .arg(&out)
                .arg(format!("{host}/app/jq:1")));
            assert_success(&o, "push of the image on the registry base");
            let err = stderr(&o);
            assert!(
                err.contains(&format!("{} mounted", theirs.len())),
                "the base's layers are mounted from its repository:\n{err}"
            );
        }
        results.push((format, reference.clone(), cache, manifest_digest, digest));
    }

    // Without credentials: one line.
    let out = work.join("no-creds");
    let o = run(&mut build_cmd(
        &work.join("cache-none"),
        &r,
        &out,
        &["--base", &refs[1].1],
    ));
    let err = assert_one_line_failure(&o, &out, "a build on a registry base without credentials");
    assert!(err.contains(&host), "names the registry: {err}");

    let mut later: Vec<String> = Vec::new();
    // pull writes a layout tagged with the reference's tag: the OCI image
    // under the registry's own digest; the Docker schema2 one converted to
    // OCI manifests over the same blobs (so a new digest), which skopeo and
    // umoci both read.
    for (format, reference) in &refs {
        let pulled = work.join(format!("pulled-{format}"));
        let o = run(br(&work.join(format!("cache-{format}")))
            .env("REGISTRY_AUTH_FILE", &auth)
            .args(["pull", "--quiet", reference, "--output"])
            .arg(&pulled));
        assert_success(&o, &format!("bareroot pull {reference}"));
        let raw = registry_manifest(reference);
        let printed = last_line(&stdout(&o));
        if *format == "oci" {
            assert_eq!(printed, sha256(&raw), "pull prints the registry's digest");
        } else {
            assert_ne!(
                printed,
                sha256(&raw),
                "a converted manifest has a new digest"
            );
        }
        let tag = only_tag(&pulled);
        assert_eq!(
            Some(tag.as_str()),
            reference.rsplit_once(':').map(|t| t.1),
            "the layout's tag"
        );
        let index = read_json(&pulled.join("index.json"));
        assert_eq!(
            index["manifests"][0]["digest"],
            printed.as_str(),
            "the layout's top is what pull printed: {index}"
        );
        assert_eq!(
            index["manifests"][0]["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "an OCI manifest, whatever the registry held: {index}"
        );
        // `oci:DIR:TAG`, as the docs name it. Checked at the end, so the
        // offline builds below run whatever this finds.
        let o = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:{tag}", pulled.display()))
            .stdin(Stdio::null()));
        let remote: Value = serde_json::from_slice(&raw).unwrap();
        if !o.status.success() {
            later.push(format!(
                "skopeo inspect oci:{}:{tag} (pulled from {reference}) failed:\n{}",
                pulled.display(),
                stderr(&o)
            ));
        } else {
            let inspected: Value = serde_json::from_slice(&o.stdout).unwrap();
            let want: Vec<Value> = layers(&remote)
                .iter()
                .map(|l| l["digest"].clone())
                .collect();
            assert_eq!(
                inspected["Layers"],
                Value::Array(want),
                "the pulled layout's layers: {inspected}"
            );
        }
        {
            let o = run(Command::new(require("umoci", "umoci"))
                .args(["stat", "--json", "--image"])
                .arg(format!("{}:{tag}", pulled.display())));
            assert_success(
                &o,
                &format!("umoci stat of the layout pulled from {reference}"),
            );
            let st: Value = serde_json::from_slice(&o.stdout).expect("umoci stat --json");
            let layered = st["history"]
                .as_array()
                .map(|h| h.iter().filter(|e| e["empty_layer"] != true).count());
            assert_eq!(
                layered,
                Some(layers(&remote).len()),
                "umoci's history: {st}"
            );
        }
    }
    // A platform the image lacks.
    let arm = work.join("pulled-arm64");
    let o = run(br(&work.join("cache-v2s2"))
        .env("REGISTRY_AUTH_FILE", &auth)
        .args([
            "pull",
            "--quiet",
            &refs[1].1,
            "--platform",
            "linux/arm64",
            "--output",
        ])
        .arg(&arm));
    let err = assert_one_line_failure(&o, &arm, "pull --platform linux/arm64 of an amd64 image");
    assert!(err.contains("linux/arm64"), "names the platform: {err}");

    // The registry is gone: a tag fails in one line, a digest builds from
    // the cache, to the same image.
    drop(reg);
    let (_, reference, cache, _, _) = &results[1];
    let out = work.join("tag-offline");
    let o =
        run(build_cmd(cache, &r, &out, &["--base", reference]).env("REGISTRY_AUTH_FILE", &auth));
    let err = assert_one_line_failure(&o, &out, "a tag build with the registry stopped");
    assert!(err.contains(&host), "names the registry: {err}");
    for (format, reference, cache, manifest_digest, tag_digest) in &results {
        let pinned = format!("{reference}@{manifest_digest}");
        let out = work.join(format!("by-digest-{format}"));
        let (digest, o) = build_ok(
            build_cmd(cache, &r, &out, &["--base", &pinned]).env("REGISTRY_AUTH_FILE", &auth),
            &format!("build on {pinned} with the registry stopped"),
        );
        assert!(
            !stderr(&o).contains("reproducible only when pinned"),
            "a pinned build needs no note:\n{}",
            stderr(&o)
        );
        assert_eq!(
            &digest,
            tag_digest,
            "{format}: pinned and by-tag builds differ:\n{}",
            support::explain_layout_difference(&work.join(format!("by-tag-{format}")), &out)
        );
    }
    assert!(later.is_empty(), "{}", later.join("\n"));
}

/// The one `org.opencontainers.image.ref.name` of a layout.
fn only_tag(layout: &Path) -> String {
    let index = read_json(&layout.join("index.json"));
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(
        tags.len(),
        1,
        "one tagged image in {}: {index}",
        layout.display()
    );
    tags[0].to_string()
}

// ---------------------------------------------------------------- bad input

/// A small image from scratch (jq alone), to tamper with or archive.
fn small_recipe() -> PathBuf {
    recipe(
        &dir().join("recipes"),
        "small",
        "name = \"small\"\ntag = \"latest\"\n[config]\nentrypoint = [\"/usr/bin/jq\"]\n[[binary]]\nsrc = \"/usr/bin/jq\"\n",
    )
}

fn on_base(name: &str, image: &str, base_keys: &str) -> PathBuf {
    recipe(
        &dir().join("recipes"),
        name,
        &format!(
            "name = \"{name}\"\ntag = \"latest\"\n[base]\nimage = \"{image}\"\n{base_keys}\n\
             [config]\nentrypoint = [\"/usr/bin/jq\"]\n[[binary]]\nsrc = \"/usr/bin/jq\"\n"
        ),
    )
}

fn build_fails(name: &str, image: &str, base_keys: &str, what: &str) -> String {
    let r = on_base(name, image, base_keys);
    let out = dir().join(name);
    let o = run(&mut build_cmd(&dir().join("cache"), &r, &out, &[]));
    assert_one_line_failure(&o, &out, what)
}

#[test]
fn base_unknown_source_scheme_is_one_line() {
    let err = build_fails(
        "bad-scheme",
        "tarball:x.tar",
        "",
        "a base of scheme tarball:",
    );
    assert!(err.contains("tarball:x.tar"), "names the source: {err}");
}

#[test]
fn base_rootfs_with_a_dotdot_entry_is_refused() {
    let d = fresh("dotdot");
    let tarball = d.join("escape.tar");
    fs::create_dir_all(d.join("tmp")).unwrap();
    let o = run(Command::new(require("python3", "python3")).arg("-c").arg(
        "import io, sys, tarfile\n\
         with tarfile.open(sys.argv[1], 'w') as t:\n\
         \x20   for name, data in [('etc/ok', b'ok\\n'), ('../escape', b'out\\n')]:\n\
         \x20       i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\n",
    ).arg(&tarball));
    assert_success(&o, "python3 tarfile");
    // Whatever bareroot unpacks goes under TMPDIR or the cache, both in `d`.
    let r = on_base("bad-escape", &format!("rootfs:{}", tarball.display()), "");
    let out = d.join("out");
    let o = run(build_cmd(&d.join("cache"), &r, &out, &[]).env("TMPDIR", d.join("tmp")));
    let err = assert_one_line_failure(&o, &out, "a rootfs with ../escape");
    assert!(err.contains("../escape"), "names the entry: {err}");
    let escaped: Vec<PathBuf> = walkdir::WalkDir::new(dir())
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(|e| e.file_name() == "escape")
        .map(|e| e.into_path())
        .collect();
    assert!(
        escaped.is_empty(),
        "the ../escape entry was written: {escaped:?}"
    );
}

#[test]
fn base_remove_of_a_path_the_base_lacks_is_one_line() {
    let err = build_fails(
        "bad-remove",
        &rootfs("bookworm-amd64"),
        "remove = [\"/opt/not-in-bookworm\"]",
        "remove of a missing path",
    );
    assert!(
        err.contains("/opt/not-in-bookworm"),
        "names the path: {err}"
    );
}

#[test]
fn base_oci_layout_with_a_tampered_layer_is_refused() {
    let d = fresh("tampered");
    let layout = d.join("small");
    build_ok(
        &mut build_cmd(&dir().join("cache"), &small_recipe(), &layout, &[]),
        "build the small image",
    );
    let m = only_manifest(&layout);
    let layer = blob_path(&layout, layers(&m)[0]["digest"].as_str().unwrap());
    let mut bytes = fs::read(&layer).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    // The blob file may be read-only.
    let mut perm = fs::metadata(&layer).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&layer, perm).unwrap();
    fs::write(&layer, &bytes).unwrap();
    let err = build_fails(
        "bad-tampered",
        &format!("oci:{}:latest", layout.display()),
        "",
        "a base layout whose layer blob was changed",
    );
    assert!(
        err.contains(
            layers(&m)[0]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .get(..12)
                .unwrap()
        ),
        "names the blob's digest: {err}"
    );
}

#[test]
fn base_docker_archive_works_and_keeps_its_layer() {
    let d = fresh("docker-archive");
    let archive = d.join("small.tar");
    let layout = d.join("small");
    build_ok(
        &mut build_cmd(
            &dir().join("cache"),
            &small_recipe(),
            &layout,
            &["--docker-archive", archive.to_str().unwrap()],
        ),
        "build --docker-archive",
    );
    let small = only_manifest(&layout);
    let small_cfg = blob_json(&layout, small["config"]["digest"].as_str().unwrap());

    let r = recipe(
        &dir().join("recipes"),
        "on-docker-archive",
        &format!(
            "name = \"on-docker-archive\"\ntag = \"latest\"\n[base]\nimage = \"docker-archive:{}\"\n\
             [[file]]\nsrc = \"{}\"\ndest = \"/etc/added\"\n",
            archive.display(),
            small_recipe().display()
        ),
    );
    let out = d.join("on-docker-archive");
    build_ok(
        &mut build_cmd(&dir().join("cache"), &r, &out, &[]),
        "build on a docker-archive",
    );
    let m = only_manifest(&out);
    assert_eq!(layers(&m).len(), 2, "the archive's layer and ours: {m}");
    let cfg = blob_json(&out, m["config"]["digest"].as_str().unwrap());
    assert_eq!(
        cfg["rootfs"]["diff_ids"][0], small_cfg["rootfs"]["diff_ids"][0],
        "the archive's layer is kept as it is"
    );
    let top = layer_entries(&out, &layers(&m)[1]);
    assert!(
        find(&top, "etc/added").is_some(),
        "our file: {:?}",
        names(&top)
    );
    // The inherited entrypoint runs the archive's jq.
    let o = run(bareroot().arg("run").arg(&out).args(["--", "--version"]));
    assert_success(&o, "bareroot run on the docker-archive base");
    assert_eq!(stdout(&o).trim(), host_jq_version());
}

#[test]
fn base_local_source_is_named_as_written_whatever_the_working_directory() {
    // The same recipe with a relative rootfs path, built from its own
    // directory and from /: the same image, and the annotation names the
    // source as the recipe wrote it.
    let d = fresh("relative-source");
    std::os::unix::fs::symlink(base_tar("bookworm-amd64"), d.join("base.tar")).unwrap();
    let r = recipe(
        &d,
        "relative",
        "name = \"relative\"\n[base]\nimage = \"rootfs:base.tar\"\n[[binary]]\nsrc = \"/usr/bin/jq\"\n",
    );
    let cache = dir().join("cache");
    let mut digests = Vec::new();
    for (cwd, out) in [(d.as_path(), d.join("a")), (Path::new("/"), d.join("b"))] {
        let (digest, _) = build_ok(build_cmd(&cache, &r, &out, &[]).current_dir(cwd), "build");
        let m = only_manifest(&out);
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.name"], "rootfs:base.tar",
            "{m}"
        );
        digests.push(digest);
    }
    assert_eq!(
        digests[0], digests[1],
        "the working directory changed the image"
    );
}

#[test]
fn base_sysroot_links_the_base_lacks_are_written_and_conflicts_are_named() {
    // Without the base's /lib64, the loader's path /lib64/ld-linux-… goes
    // through the sysroot's /lib64 symlink: it must be in our layer, or jq
    // cannot start.
    let r = on_base(
        "no-lib64",
        &rootfs("bookworm-amd64"),
        "remove = [\"/lib64\"]",
    );
    let out = dir().join("no-lib64");
    build_ok(
        &mut build_cmd(&dir().join("cache"), &r, &out, &[]),
        "build without /lib64",
    );
    let top = layer_entries(&out, layers(&only_manifest(&out)).last().unwrap());
    assert!(
        find(&top, "lib64").is_some(),
        "our layer lacks /lib64: {:?}",
        names(&top)
    );
    let o = run(support::bareroot()
        .arg("run")
        .arg(&out)
        .args(["--", "--version"]));
    assert_success(&o, "bareroot run without the base's /lib64");
    assert_eq!(stdout(&o).trim(), host_jq_version());

    // A directory where the base has a symlink (/lib -> usr/lib) would
    // break the base: one line naming the path and the entry.
    let err = build_fails(
        "dir-over-link",
        &rootfs("bookworm-amd64"),
        "[[dir]]\ndest = \"/lib\"",
        "a [[dir]] over the base's /lib symlink",
    );
    assert!(
        err.contains("[[dir]]") && err.contains("/lib") && err.contains("symlink"),
        "{err}"
    );
}

#[test]
fn base_users_join_the_base_s_groups_and_ids_are_checked() {
    let image = rootfs("bookworm-amd64");
    let d = dir().join("recipes");
    let r = recipe(
        &d,
        "users-merge",
        &format!(
            "name = \"users-merge\"\nusers = true\n[[user]]\nname = \"app\"\nuid = 1000\n\
             [[group]]\nname = \"users\"\ngid = 100\nmembers = [\"app\"]\n\
             [base]\nimage = \"{image}\"\n[[binary]]\nsrc = \"/usr/bin/jq\"\n"
        ),
    );
    let out = dir().join("users-merge");
    build_ok(
        &mut build_cmd(&dir().join("cache"), &r, &out, &[]),
        "build with users",
    );
    let o = run(support::bareroot().arg("run").arg(&out).args([
        "--entrypoint",
        "/bin/sh",
        "--",
        "-c",
        "id app; grep -c '^root:' /etc/passwd; grep '^nogroup:' /etc/group",
    ]));
    assert_success(&o, "bareroot run id app");
    let text = stdout(&o);
    // The base's users group (gid 100) gains app; the base's root line is
    // kept once; Debian's nogroup (65534) stays, distroless's nobody group
    // with the same gid is not added beside it.
    assert!(text.contains("100(users)"), "{text}");
    assert!(text.lines().nth(1) == Some("1"), "{text}");
    assert!(text.contains("nogroup:x:65534:"), "{text}");

    // A recipe user with a uid the base gives another name: one line.
    let r = recipe(
        &d,
        "users-clash",
        &format!(
            "name = \"users-clash\"\n[[user]]\nname = \"app\"\nuid = 1\n\
             [base]\nimage = \"{image}\"\n[[binary]]\nsrc = \"/usr/bin/jq\"\n"
        ),
    );
    let out = dir().join("users-clash");
    let o = run(&mut build_cmd(&dir().join("cache"), &r, &out, &[]));
    let err = assert_one_line_failure(&o, &out, "a uid the base has under another name");
    assert!(err.contains("uid 1") && err.contains("daemon"), "{err}");
}
