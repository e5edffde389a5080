//! End to end: build the recipes in recipes/ and run the images for real.
//! Each image is unpacked by hand (index.json → manifest → layer, checked
//! with serde_json, sha2 and the system tar, none of bareroot's code) and
//! run with chroot; the shell image runs under podman, the jq image under
//! runc after umoci unpacks it, and skopeo inspects every layout.
//!
//! Builds are shared: every test takes the recipes it needs from one
//! [`Images`] fixture, which builds each recipe at most once while any test
//! still holds it, and removes its temp dir when the last one finishes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{self, ok, require, run, stderr, stdout, Podman};

/// One recipe in recipes/: what its image must contain and print.
struct Case {
    name: &'static str,
    tag: &'static str,
    /// `[[binary]]` entries: the ELF file (as `bareroot closure` takes it;
    /// relative paths are from recipes/) and where the image puts it.
    binaries: &'static [(&'static str, &'static str)],
    /// Regular files from `[[file]]` and `[[tree]]` entries.
    files: &'static [&'static str],
    /// Checks what entrypoint + cmd printed.
    expect: fn(&str),
}

const CASES: &[Case] = &[
    Case {
        name: "shell",
        tag: "latest",
        binaries: &[
            ("/usr/bin/bash", "/usr/bin/bash"),
            ("/usr/bin/ls", "/usr/bin/ls"),
            ("/usr/bin/cat", "/usr/bin/cat"),
            ("/usr/bin/env", "/usr/bin/env"),
            ("/usr/bin/mkdir", "/usr/bin/mkdir"),
            ("/usr/bin/rm", "/usr/bin/rm"),
        ],
        files: &[],
        expect: |out| assert_eq!(out, "hello from a bareroot shell image\n"),
    },
    Case {
        name: "jq",
        tag: "latest",
        binaries: &[("/usr/bin/jq", "/usr/bin/jq")],
        files: &[],
        expect: |out| {
            let v: Value = serde_json::from_str(out)
                .unwrap_or_else(|e| panic!("jq printed no JSON ({e}):\n{out}"));
            assert_eq!(v, json!({"image": "jq", "built_by": "bareroot"}));
        },
    },
    Case {
        name: "busybox",
        tag: "latest",
        binaries: &[("/bin/busybox", "/bin/busybox")],
        files: &[],
        expect: |out| assert_eq!(out, "hello from busybox\nLinux\n"),
    },
    Case {
        name: "hello",
        tag: "latest",
        binaries: &[("hello/hello", "/hello")],
        files: &[],
        expect: |out| assert_eq!(out, "hello from a bareroot image\n"),
    },
    Case {
        name: "hello-files",
        tag: "v1",
        binaries: &[("hello/hello", "/usr/bin/hello")],
        files: &["/etc/app/app.conf", "/etc/group", "/etc/passwd"],
        expect: |out| assert_eq!(out, "hello from a bareroot image\n"),
    },
];

fn case(name: &str) -> &'static Case {
    CASES.iter().find(|c| c.name == name).unwrap()
}

fn recipes() -> PathBuf {
    support::repo().join("recipes")
}

/// A built layout and the top digest `bareroot build` printed.
struct Built {
    layout: PathBuf,
    digest: String,
}

/// The shared builds (see the module docs).
struct Images {
    dir: tempfile::TempDir,
    built: BTreeMap<&'static str, OnceLock<Built>>,
}

impl Images {
    fn shared() -> Arc<Images> {
        static SHARED: Mutex<Weak<Images>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(images) = slot.upgrade() {
            return images;
        }
        let images = Arc::new(Images {
            dir: support::tempdir(),
            built: CASES.iter().map(|c| (c.name, OnceLock::new())).collect(),
        });
        *slot = Arc::downgrade(&images);
        images
    }

    /// Build `name` (once; concurrent callers wait for the first).
    fn get(&self, name: &str) -> &Built {
        self.built[name].get_or_init(|| {
            // A name unique in podman's storage, which names images after
            // the layout's path.
            let layout = self.dir.path().join(format!("bareroot-e2e-{name}"));
            let digest = support::build(&recipes().join(format!("{name}.toml")), &layout);
            assert!(
                digest.len() == 71 && digest.starts_with("sha256:"),
                "build {name}: the last stdout line is not a digest: {digest:?}"
            );
            Built { layout, digest }
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn require_root(what: &str) {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("no Uid: line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "{what} needs root (euid is {euid}): run the integration tests as root, \
         e.g. `sudo -E cargo test --test integration`"
    );
}

/// The blob a descriptor names, checked against its digest and size.
fn blob(layout: &Path, desc: &Value, media_type: &str) -> (PathBuf, Vec<u8>) {
    assert_eq!(desc["mediaType"], media_type, "descriptor {desc}");
    let digest = desc["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest: {desc}"));
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let path = layout.join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob {digest}: content does not match its name"
    );
    assert_eq!(
        desc["size"].as_u64(),
        Some(bytes.len() as u64),
        "blob {digest}: size"
    );
    (path, bytes)
}

/// Follow index.json → manifest → config and the single layer, checking
/// every descriptor; return the config and the layer blob's path.
fn read_image(layout: &Path, tag: &str, top_digest: &str) -> (Value, PathBuf) {
    assert_eq!(
        read_json(&layout.join("oci-layout")),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"]
        .as_array()
        .expect("index.json: manifests");
    assert_eq!(manifests.len(), 1, "one platform, one manifest: {index}");
    let desc = &manifests[0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"], tag,
        "tag in index.json"
    );
    assert_eq!(desc["digest"], top_digest, "index.json vs printed digest");
    let (_, bytes) = blob(layout, desc, "application/vnd.oci.image.manifest.v1+json");
    let manifest: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
    assert_eq!(manifest["schemaVersion"], 2);
    let (_, bytes) = blob(
        layout,
        &manifest["config"],
        "application/vnd.oci.image.config.v1+json",
    );
    let config: Value = serde_json::from_slice(&bytes).expect("config JSON");
    let layers = manifest["layers"].as_array().expect("manifest: layers");
    assert_eq!(layers.len(), 1, "a single layer: {manifest}");
    let (path, bytes) = blob(
        layout,
        &layers[0],
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut tar)
        .expect("layer: gunzip");
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!([format!("sha256:{}", sha256_hex(&tar))]),
        "config diff_ids vs the uncompressed layer"
    );
    (config, path)
}

/// Resolve `path` inside `root` as the kernel would after chroot(root):
/// symlinks are followed, absolute targets and `..` stay inside the root.
fn resolve_in(root: &Path, path: &Path) -> Result<PathBuf, String> {
    fn parts(p: &Path) -> impl Iterator<Item = OsString> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
    }
    let mut todo: VecDeque<OsString> = parts(path).collect();
    let mut at: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            at.pop();
            continue;
        }
        at.push(part);
        let host: PathBuf = std::iter::once(root.as_os_str().to_owned())
            .chain(at.iter().cloned())
            .collect();
        let meta = fs::symlink_metadata(&host)
            .map_err(|e| format!("{}: /{} in the image: {e}", path.display(), at_str(&at)))?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return Err(format!("{}: too many symlinks", path.display()));
            }
            let target = fs::read_link(&host).unwrap();
            at.pop();
            if target.is_absolute() {
                at.clear();
            }
            let mut next: VecDeque<OsString> = parts(&target).collect();
            next.extend(todo);
            todo = next;
        }
    }
    Ok(std::iter::once(root.as_os_str().to_owned())
        .chain(at)
        .collect())
}

fn at_str(at: &[OsString]) -> String {
    at.iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// What `bareroot closure --json` says about a recipe's binaries.
struct Closure {
    /// PT_INTERP per binary (None for static ones), in the recipe's order.
    interpreters: Vec<Option<String>>,
    /// Every interpreter and library path, as the loader names them.
    paths: BTreeSet<String>,
}

fn closure(case: &Case) -> Closure {
    let out = ok(support::bareroot()
        .current_dir(recipes())
        .args(["closure", "--json"])
        .args(case.binaries.iter().map(|(src, _)| src)));
    let report: Value = serde_json::from_str(&out).expect("closure --json");
    let files = report.as_array().expect("closure --json: an array");
    assert_eq!(files.len(), case.binaries.len(), "{report}");
    let mut paths = BTreeSet::new();
    let mut interpreters = Vec::new();
    for f in files {
        let interp = f["interpreter"].as_str().map(str::to_string);
        paths.extend(interp.clone());
        interpreters.push(interp);
        for lib in f["libraries"].as_array().expect("libraries") {
            paths.insert(lib["path"].as_str().expect("library path").to_string());
        }
    }
    Closure {
        interpreters,
        paths,
    }
}

fn host_real(path: &str) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|e| panic!("canonicalize {path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// The rootfs holds exactly the recipe's files and its closure, and every
/// path the loader will open resolves inside it to the host's bytes.
fn check_rootfs(case: &Case, rootfs: &Path) {
    let closure = closure(case);
    let name = case.name;

    let mut regular = BTreeSet::new();
    for entry in walkdir::WalkDir::new(rootfs).min_depth(1) {
        let entry = entry.expect("walk rootfs");
        let rel = format!("/{}", entry.path().strip_prefix(rootfs).unwrap().display());
        let ft = entry.file_type();
        if ft.is_file() {
            regular.insert(rel);
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            let to = resolve_in(rootfs, Path::new(&rel))
                .unwrap_or_else(|e| panic!("{name}: symlink {rel} -> {target:?} dangles: {e}"));
            assert!(to.exists(), "{name}: symlink {rel} dangles");
        } else {
            assert!(
                ft.is_dir(),
                "{name}: {rel} is neither file, dir nor symlink"
            );
        }
    }
    let mut expected: BTreeSet<String> = case.binaries.iter().map(|(_, d)| d.to_string()).collect();
    expected.extend(case.files.iter().map(|f| f.to_string()));
    expected.extend(closure.paths.iter().map(|p| host_real(p)));
    // What the loader can't see but glibc needs: libgcc_s (dlopened for
    // pthread_cancel) and the image's own ld.so.cache.
    if closure.paths.iter().any(|p| p.ends_with("/libc.so.6")) {
        expected.insert(host_real("/lib/x86_64-linux-gnu/libgcc_s.so.1"));
        expected.insert("/etc/ld.so.cache".to_string());
    }
    // Package metadata for scanners (checked in sbom.rs): status.d, the
    // packages' copyright files and os-release.
    let metadata = |p: &str| {
        p.starts_with("/var/lib/dpkg/status.d/")
            || (p.starts_with("/usr/share/doc/") && p.ends_with("/copyright"))
            || p == "/etc/os-release"
    };
    regular.retain(|p| !metadata(p));
    assert_eq!(
        regular, expected,
        "{name}: the image's regular files are not exactly the recipe's files \
         plus the real paths of their closure"
    );

    // Every path the loader opens (PT_INTERP, DT_NEEDED as resolved) is the
    // host's file, reached through the image's own symlinks.
    for path in &closure.paths {
        let real = resolve_in(rootfs, Path::new(path)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(real.is_file(), "{name}: {path} is not a file in the image");
        assert!(
            fs::read(&real).unwrap() == fs::read(host_real(path)).unwrap(),
            "{name}: {path} differs from the host's"
        );
        // A symlink in the closure (libjq.so.1 -> libjq.so.1.0.4) is relative.
        let parent = resolve_in(rootfs, Path::new(path).parent().unwrap()).unwrap();
        let last = parent.join(Path::new(path).file_name().unwrap());
        if fs::symlink_metadata(&last)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            let target = fs::read_link(&last).unwrap();
            assert!(
                target.is_relative(),
                "{name}: {path} -> {target:?} is absolute"
            );
        }
    }

    // The binaries are the host's bytes, and PT_INTERP (read here with
    // goblin) is what the closure reports.
    for ((src, dest), interp) in case.binaries.iter().zip(&closure.interpreters) {
        let in_image = fs::read(rootfs.join(&dest[1..])).unwrap();
        assert!(
            in_image == fs::read(recipes().join(src)).unwrap(),
            "{name}: {dest} differs from {src}"
        );
        let elf = goblin::elf::Elf::parse(&in_image).expect("parse ELF");
        assert_eq!(
            elf.interpreter,
            interp.as_deref(),
            "{name}: PT_INTERP of {dest}"
        );
    }

    match name {
        "jq" => {
            let interp = closure.interpreters[0].as_deref().expect("jq is dynamic");
            assert_eq!(interp, "/lib64/ld-linux-x86-64.so.2");
            assert_eq!(
                fs::read_link(rootfs.join("lib64")).expect("/lib64 is a symlink"),
                Path::new("usr/lib64")
            );
            let link = rootfs.join("usr/lib/x86_64-linux-gnu/libjq.so.1");
            let target = fs::read_link(&link).expect("libjq.so.1 is a symlink");
            assert!(target.is_relative(), "libjq.so.1 -> {target:?}");
            assert!(
                fs::symlink_metadata(link.parent().unwrap().join(&target))
                    .unwrap()
                    .is_file(),
                "libjq.so.1 -> {target:?} is not a regular file"
            );
        }
        "shell" => {
            assert_eq!(
                fs::read_link(rootfs.join("bin")).unwrap(),
                Path::new("usr/bin")
            );
            assert_eq!(
                fs::read_link(rootfs.join("usr/bin/sh")).unwrap(),
                Path::new("bash")
            );
        }
        "busybox" => {
            assert_eq!(
                fs::read_link(rootfs.join("bin/sh")).unwrap(),
                Path::new("busybox")
            );
            let mode = fs::metadata(rootfs.join("root"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o700, "/root mode");
        }
        "hello-files" => {
            let conf = rootfs.join("etc/app/app.conf");
            assert_eq!(
                fs::read(&conf).unwrap(),
                fs::read(recipes().join("files/app.conf")).unwrap()
            );
            let mode = fs::metadata(&conf).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o640, "app.conf mode");
            let mode = fs::metadata(rootfs.join("tmp"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o1777, "/tmp mode");
            assert!(rootfs.join("home/nonroot").is_dir());
        }
        _ => {}
    }
}

/// chroot into `rootfs` and run the config's entrypoint + cmd with its env
/// and user.
fn chroot_run(chroot: &Path, rootfs: &Path, config: &Value) -> String {
    let cfg = &config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let argv: Vec<String> = strings(&cfg["Entrypoint"])
        .into_iter()
        .chain(strings(&cfg["Cmd"]))
        .collect();
    assert!(!argv.is_empty(), "no entrypoint or cmd: {config}");
    // env_clear() below hides PATH from the lookup of chroot itself.
    let mut cmd = Command::new(chroot);
    if let Some(user) = cfg["User"].as_str().filter(|u| !u.is_empty()) {
        cmd.arg(format!("--userspec={user}"));
    }
    cmd.arg(rootfs).args(&argv).env_clear().stdin(Stdio::null());
    for kv in strings(&cfg["Env"]) {
        let (k, v) = kv.split_once('=').expect("Env entry without =");
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "chroot {argv:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn chroot_runs_every_recipe_image() {
    require_root("chroot");
    require("tar", "tar");
    let chroot = require("chroot", "coreutils");
    let images = Images::shared();
    let tmp = support::tempdir();
    for case in CASES {
        let built = images.get(case.name);
        let (config, layer) = read_image(&built.layout, case.tag, &built.digest);
        let rootfs = tmp.path().join(case.name);
        fs::create_dir(&rootfs).unwrap();
        ok(Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&rootfs));
        check_rootfs(case, &rootfs);
        let out = chroot_run(&chroot, &rootfs, &config);
        eprintln!("{}: {}", case.name, out.trim_end());
        (case.expect)(&out);
    }
}

#[test]
fn layouts_pass_skopeo_inspect() {
    require("skopeo", "skopeo");
    let images = Images::shared();
    for case in CASES {
        let built = images.get(case.name);
        let reference = format!("oci:{}:{}", built.layout.display(), case.tag);
        let info: Value =
            serde_json::from_str(&ok(Command::new("skopeo").arg("inspect").arg(&reference)))
                .expect("skopeo inspect: JSON");
        assert_eq!(
            info["Digest"],
            built.digest.as_str(),
            "{}: {info}",
            case.name
        );
        assert_eq!(info["Os"], "linux", "{}", case.name);
        assert_eq!(
            info["Layers"].as_array().map(Vec::len),
            Some(1),
            "{}: {info}",
            case.name
        );
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(&reference));
        assert!(
            raw.status.success(),
            "skopeo inspect --raw: {}",
            stderr(&raw)
        );
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw.stdout)),
            built.digest,
            "{}: sha256 of the raw manifest",
            case.name
        );
    }
}

#[test]
fn podman_runs_the_shell_image() {
    let podman = Podman::get();
    let images = Images::shared();
    let built = images.get("shell");
    // The README's form, `oci:<relative path>:<tag>`: podman names the image
    // after the path, and a temp dir's absolute path may hold upper-case
    // letters, which image names may not.
    let dir = built.layout.parent().unwrap();
    let name = built.layout.file_name().unwrap().to_str().unwrap();
    let out = run(podman
        .cmd()
        .current_dir(dir)
        .args(["run", "--rm", "--network", "none"])
        .arg(format!("oci:{name}:{}", case("shell").tag))
        .stdin(Stdio::null()));
    // Best effort: untag (and so delete) the pulled image.
    let _ = run(podman
        .cmd()
        .args(["rmi", "--force"])
        .arg(format!("localhost/{name}:{}", case("shell").tag)));
    assert!(
        out.status.success(),
        "podman run failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "hello from a bareroot shell image\n");
}

#[test]
fn runc_runs_the_jq_image_unpacked_by_umoci() {
    require_root("runc");
    require("umoci", "umoci");
    require("runc", "runc");
    let images = Images::shared();
    let jq = case("jq");
    let built = images.get(jq.name);
    let tmp = support::tempdir();
    let bundle = tmp.path().join("bundle");
    ok(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{}", built.layout.display(), jq.tag))
        .arg(&bundle));

    let spec_path = bundle.join("config.json");
    let mut spec = read_json(&spec_path);
    assert_eq!(
        spec["process"]["args"],
        json!([
            "/usr/bin/jq",
            "-n",
            "{image: \"jq\", built_by: \"bareroot\"}"
        ]),
        "umoci's process.args from the image's entrypoint + cmd"
    );
    spec["process"]["terminal"] = Value::Bool(false);
    fs::write(&spec_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

    let state = tmp.path().join("runc-state");
    let id = format!("bareroot-e2e-jq-{}", std::process::id());
    let out = run(Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null()));
    let _ = run(Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &id]));
    assert!(
        out.status.success(),
        "runc run failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    (jq.expect)(&stdout(&out));
}
