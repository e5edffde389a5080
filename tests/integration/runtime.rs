//! Distroless runtime files, for real: every image here is built from a
//! recipe (the ones in recipes/, or small ones written by the test around C
//! programs from tests/fixtures/runtime/) and its programs are run in it with
//! `bareroot run`. What the programs print shows that the runtime files
//! work (NSS, zoneinfo, gconv, libgcc_s for pthread_cancel, `.note.dlopen`,
//! `[[library]]`, the generated ld.so.cache, users); `bareroot inspect
//! --json` and the layer's own bytes show what the image holds.
//!
//! Each image is built once. The distroless recipe, which several tests
//! look at, is shared: built by the first test that asks for it and removed
//! when the last one holding it finishes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use crate::support::{self, bareroot, ok, require, run, stderr, stdout};

/// The C sources these tests build.
fn fixtures() -> PathBuf {
    support::repo().join("tests/fixtures/runtime")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// `gcc ARGS...`, which must succeed.
fn gcc(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    require("gcc", "gcc");
    let mut c = Command::new("gcc");
    for a in args {
        c.arg(a);
    }
    ok(&mut c);
}

/// Write `text` as `dir/name.toml`.
fn recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Build `recipe` into `dir/<stem>.oci`; return the layout.
fn build(recipe: &Path) -> PathBuf {
    let stem = recipe.file_stem().unwrap().to_string_lossy().into_owned();
    let layout = recipe.with_file_name(format!("{stem}.oci"));
    let digest = support::build(recipe, &layout);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "build {}: the last stdout line is not a digest: {digest:?}",
        recipe.display()
    );
    layout
}

/// A build that must fail (exit code 2, nothing written); return stderr.
fn build_fails(recipe: &Path) -> String {
    let layout = recipe.with_extension("oci");
    let o = run(bareroot()
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(&layout)
        .arg("--quiet"));
    assert_eq!(
        o.status.code(),
        Some(2),
        "build {} should fail with exit code 2:\nstdout:\n{}\nstderr:\n{}",
        recipe.display(),
        stdout(&o),
        stderr(&o)
    );
    assert!(
        !layout.exists(),
        "a failed build wrote {}",
        layout.display()
    );
    stderr(&o)
}

/// `bareroot run LAYOUT [OPTIONS...]`, output captured, exit code unchecked.
/// Options go before `--`; pass `["--", args...]` to replace the cmd.
fn run_image(layout: &Path, args: &[&str]) -> Output {
    run(bareroot().arg("run").arg(layout).args(args))
}

/// A run that must succeed; return its stdout.
fn run_ok(layout: &Path, args: &[&str]) -> String {
    let o = run_image(layout, args);
    assert!(
        o.status.success(),
        "bareroot run {} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        layout.display(),
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// What `bareroot inspect --json` says about a one-platform layout.
struct Inspected {
    /// The image config's `config` object (Entrypoint, Env, User, ...).
    config: Value,
    /// The layer's entries by path ("/etc/passwd"): type, mode, uid, gid, size, target.
    files: BTreeMap<String, Value>,
}

impl Inspected {
    fn of(layout: &Path) -> Inspected {
        let out = ok(bareroot().arg("inspect").arg("--json").arg(layout));
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("inspect --json printed no JSON ({e}):\n{out}"));
        let images = v[0]["images"].as_array().expect("inspect: images");
        assert_eq!(images.len(), 1, "one platform: {v}");
        let layers = images[0]["layers"].as_array().expect("inspect: layers");
        assert_eq!(layers.len(), 1, "one layer: {v}");
        let files = layers[0]["files"]
            .as_array()
            .expect("inspect: files")
            .iter()
            .map(|f| (f["path"].as_str().expect("path").to_string(), f.clone()))
            .collect();
        Inspected {
            config: images[0]["config"]["config"].clone(),
            files,
        }
    }

    fn has(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    fn entry(&self, path: &str) -> &Value {
        self.files.get(path).unwrap_or_else(|| {
            panic!(
                "{path} is not in the layer; it has:\n{}",
                self.files.keys().cloned().collect::<Vec<_>>().join("\n")
            )
        })
    }

    /// (type, mode, uid, gid) of an entry.
    fn meta(&self, path: &str) -> (String, String, u64, u64) {
        let e = self.entry(path);
        (
            e["type"].as_str().unwrap_or("").to_string(),
            e["mode"].as_str().unwrap_or("").to_string(),
            e["uid"].as_u64().unwrap_or(u64::MAX),
            e["gid"].as_u64().unwrap_or(u64::MAX),
        )
    }

    /// Paths in the layer ending in `suffix`.
    fn ending(&self, suffix: &str) -> Vec<&str> {
        self.files
            .keys()
            .filter(|p| p.ends_with(suffix))
            .map(String::as_str)
            .collect()
    }
}

/// The bytes of the regular file `path` ("/etc/passwd") in a one-platform
/// layout's layer, read with the tar and flate2 crates.
fn layer_file(layout: &Path, path: &str) -> Vec<u8> {
    let json = |p: PathBuf| -> Value {
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let blob = |digest: &Value| {
        let d = digest.as_str().expect("digest");
        layout.join("blobs/sha256").join(&d["sha256:".len()..])
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    let layer = fs::File::open(blob(&manifest["layers"][0]["digest"])).expect("open layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let want = path.trim_start_matches('/');
    for e in archive.entries().expect("a tar layer") {
        let mut e = e.expect("a tar entry");
        if e.path().expect("entry path").to_string_lossy() == want {
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).expect("read entry");
            return bytes;
        }
    }
    panic!("{path} is not in the layer of {}", layout.display())
}

fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("no Uid: line in /proc/self/status")
}

// ------------------------------------------------------------ distroless

/// recipes/distroless.toml, built once for the tests that look at it.
struct Distroless {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    digest: String,
    image: Inspected,
}

fn distroless() -> Arc<Distroless> {
    static SHARED: Mutex<Weak<Distroless>> = Mutex::new(Weak::new());
    // Held while building: a second caller waits for the first build.
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = slot.upgrade() {
        return d;
    }
    let dir = support::tempdir();
    let layout = dir.path().join("distroless");
    let digest = support::build(&support::repo().join("recipes/distroless.toml"), &layout);
    let image = Inspected::of(&layout);
    let d = Arc::new(Distroless {
        _dir: dir,
        layout,
        digest,
        image,
    });
    *slot = Arc::downgrade(&d);
    d
}

#[test]
fn distroless_runs_getent_date_with_users_nss_certs_and_zoneinfo() {
    let d = distroless();
    let img = &d.image;

    // The default cmd: `getent passwd nonroot`, from /etc/passwd.
    assert_eq!(
        run_ok(&d.layout, &[]),
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    assert_eq!(img.config["User"], "65532:65532", "config: {}", img.config);
    assert_eq!(img.config["WorkingDir"], "/home/nonroot");

    // NSS: hosts through the files module and the generated /etc/hosts.
    let hosts = run_ok(
        &d.layout,
        &[
            "--entrypoint",
            "/usr/bin/getent",
            "--",
            "hosts",
            "localhost",
        ],
    );
    assert!(
        hosts.split_whitespace().any(|w| w == "localhost")
            && (hosts.starts_with("127.0.0.1") || hosts.starts_with("::1")),
        "getent hosts localhost printed {hosts:?}"
    );
    for f in ["/etc/nsswitch.conf", "/etc/hosts"] {
        assert_eq!(img.meta(f), ("file".into(), "0644".into(), 0, 0), "{f}");
    }

    // Homes and /tmp.
    assert_eq!(
        img.meta("/home/nonroot"),
        ("dir".into(), "0700".into(), 65532, 65532)
    );
    assert_eq!(img.meta("/root"), ("dir".into(), "0700".into(), 0, 0));
    assert_eq!(img.meta("/tmp"), ("dir".into(), "1777".into(), 0, 0));
    assert!(!img.has("/nonexistent"), "nobody's home is not created");

    // The CA bundle, as the host has it, and SSL_CERT_FILE pointing at it.
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    assert_eq!(img.meta(bundle), ("file".into(), "0644".into(), 0, 0));
    let host = fs::read(bundle).expect("read the host's CA bundle");
    assert!(
        layer_file(&d.layout, bundle) == host,
        "{bundle} in the image differs from the host's"
    );
    let env: Vec<&str> = img.config["Env"]
        .as_array()
        .expect("config Env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "Env: {env:?}"
    );

    // Zoneinfo: a listed zone works, an unlisted one is not there.
    let date = |tz: &str| {
        run_ok(
            &d.layout,
            &[
                "-e",
                &format!("TZ={tz}"),
                "--entrypoint",
                "/usr/bin/date",
                "--",
                "-d",
                "@0",
                "+%Z",
            ],
        )
    };
    assert_eq!(date("Europe/Berlin"), "CET\n");
    assert_eq!(date("America/New_York"), "EST\n");
    assert!(img.has("/usr/share/zoneinfo/Europe/Berlin"));
    assert!(!img.has("/usr/share/zoneinfo/Asia/Tokyo"));
    assert!(!img.has("/usr/share/zoneinfo/Asia"));
    assert_ne!(
        date("Asia/Tokyo"),
        "JST\n",
        "Asia/Tokyo is not in the recipe's tzdata list"
    );
}

#[test]
fn distroless_passwd_and_group_match_distroless() {
    // distroless's base/BUILD: passwd_tar entries root, nobody, nonroot;
    // group_file entries root, nobody, tty, staff, nonroot — in that order.
    let d = distroless();
    let passwd = String::from_utf8(layer_file(&d.layout, "/etc/passwd")).unwrap();
    let group = String::from_utf8(layer_file(&d.layout, "/etc/group")).unwrap();
    assert_eq!(
        (passwd.as_str(), group.as_str()),
        (
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
             nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
            "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
        ),
        "/etc/passwd and /etc/group as distroless writes them"
    );
}

#[test]
fn distroless_runs_as_nonroot() {
    // `bareroot run` switches to the image's user only when it runs as root
    // (unprivileged, it runs in a user namespace where only root is mapped).
    assert_eq!(
        euid(),
        0,
        "this test needs root: run the integration tests as root, \
         e.g. `sudo -E cargo test --test integration`"
    );
    let d = distroless();
    // /root is 0700 root: nonroot may not look inside, its own home it may.
    let read = |file: &str| {
        let o = run_image(
            &d.layout,
            &["--entrypoint", "/usr/bin/date", "--", "-f", file],
        );
        assert!(!o.status.success(), "date -f {file} found a file");
        stderr(&o)
    };
    let e = read("/root/x");
    assert!(e.contains("Permission denied"), "date -f /root/x: {e}");
    let e = read("/home/nonroot/x");
    assert!(
        e.contains("No such file or directory"),
        "date -f /home/nonroot/x: {e}"
    );
}

#[test]
fn distroless_build_is_reproducible() {
    let d = distroless();
    let dir = support::tempdir();
    let again = support::build(
        &support::repo().join("recipes/distroless.toml"),
        &dir.path().join("again"),
    );
    assert_eq!(again, d.digest, "the same recipe built twice");
}

// ---------------------------------------------------------------- python

#[test]
fn python_runs_with_ssl_sqlite_ctypes_lzma() {
    require("python3", "python3");
    assert!(
        Path::new("/usr/bin/python3.11").is_file() && Path::new("/usr/lib/python3.11").is_dir(),
        "recipes/python.toml packages Debian's python3.11: install it with \
         `apt-get install python3` (or run scripts/test.sh)"
    );
    let dir = support::tempdir();
    let layout = dir.path().join("python");
    support::build(&support::repo().join("recipes/python.toml"), &layout);
    let img = Inspected::of(&layout);

    let out = run_ok(&layout, &[]);
    let ok_line = out.starts_with("python 3.11 with ssl (OpenSSL ")
        && out.contains("), sqlite3 3.")
        && out.ends_with(", ctypes, lzma\n")
        && out.lines().count() == 1;
    assert!(ok_line, "the default cmd printed {out:?}");
    assert_eq!(img.config["User"], "65532:65532");

    // ctypes loads libc.so.6 by soname inside the image.
    let out = run_ok(
        &layout,
        &[
            "--",
            "-c",
            "import ctypes; libc = ctypes.CDLL('libc.so.6'); print('abs', libc.abs(-42))",
        ],
    );
    assert_eq!(out, "abs 42\n");

    // The extension modules' closures came with the tree.
    for lib in [
        "libssl.so.3",
        "libcrypto.so.3",
        "libsqlite3.so.0",
        "liblzma.so.5",
    ] {
        assert!(
            !img.ending(&format!("/{lib}")).is_empty(),
            "{lib} (needed by a lib-dynload module) is not in the layer"
        );
    }
    assert!(!img.ending("/libffi.so.8").is_empty());
    // The tree's excludes.
    let unwanted: Vec<&String> = img
        .files
        .keys()
        .filter(|p| {
            p.contains("/dist-packages")
                || p.contains("/site-packages")
                || p.contains("/__pycache__")
                || p.ends_with(".pyc")
        })
        .collect();
    assert!(
        unwanted.is_empty(),
        "excluded paths in the layer: {unwanted:?}"
    );
    assert!(img.has("/usr/lib/python3.11/os.py"));
}

// ----------------------------------------------------------------- gconv

#[test]
fn gconv_selected_charset_converts_and_none_fails() {
    let dir = support::tempdir();
    let d = dir.path();
    fs::write(d.join("in.txt"), "héllo\n").unwrap();
    let text = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\n{extra}\n[config]\nentrypoint = [\"/usr/bin/iconv\"]\n\
             cmd = [\"-f\", \"UTF-8\", \"-t\", \"UTF-16\", \"/in.txt\"]\n\n\
             [[binary]]\nsrc = \"/usr/bin/iconv\"\n\n\
             [[file]]\nsrc = \"in.txt\"\ndest = \"/in.txt\"\n"
        )
    };
    let with = build(&recipe(d, "utf16", &text("utf16", "gconv = [\"UTF-16\"]")));
    let without = build(&recipe(d, "nogconv", &text("nogconv", "")));

    let o = run_image(&with, &[]);
    assert!(o.status.success(), "iconv failed: {}", stderr(&o));
    // A byte order mark, then "héllo\n" in UTF-16 (little-endian here).
    let mut want = vec![0xff, 0xfe];
    for c in "héllo\n".encode_utf16() {
        want.extend_from_slice(&c.to_le_bytes());
    }
    assert_eq!(o.stdout, want, "iconv -t UTF-16 output");
    let img = Inspected::of(&with);
    let gconv = "/usr/lib/x86_64-linux-gnu/gconv";
    let modules: Vec<&str> = img
        .ending(".so")
        .into_iter()
        .filter(|p| p.starts_with(gconv))
        .collect();
    assert_eq!(
        modules,
        [format!("{gconv}/UTF-16.so")],
        "only the module UTF-16 needs"
    );
    assert!(img.has(&format!("{gconv}/gconv-modules")));

    let o = run_image(&without, &[]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && o.stdout.is_empty() && e.contains("conversion"),
        "iconv without gconv modules should refuse the conversion ({}):\n{e}",
        o.status
    );
    assert!(!Inspected::of(&without).has(gconv));
}

// -------------------------------------------------------------- libgcc_s

#[test]
fn pthread_cancel_needs_the_auto_added_libgcc_s() {
    let dir = support::tempdir();
    let d = dir.path();
    gcc(&[
        &"-O2",
        &"-pthread",
        &"-o",
        &d.join("cancel"),
        &fixture("cancel.c"),
    ]);
    let text = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\n{extra}\n[config]\nentrypoint = [\"/usr/bin/cancel\"]\n\n\
             [[binary]]\nsrc = \"cancel\"\n"
        )
    };
    let with = build(&recipe(d, "cancel", &text("cancel", "")));
    let without = build(&recipe(
        d,
        "nolibgcc",
        &text("nolibgcc", "libgcc_s = false"),
    ));
    // glibc's fatal messages go to the terminal unless this is set.
    let env = ["-e", "LIBC_FATAL_STDERR_=1"];

    assert_eq!(run_ok(&with, &env), "cancelled\n");
    let libgcc = Inspected::of(&with).ending("/libgcc_s.so.1").len();
    assert_eq!(libgcc, 1, "libgcc_s.so.1 is added for glibc");

    let o = run_image(&without, &env);
    let e = stderr(&o);
    assert!(
        !o.status.success()
            && e.contains("libgcc_s.so.1 must be installed for pthread_cancel to work"),
        "without libgcc_s pthread_cancel should abort ({}):\nstdout:\n{}\nstderr:\n{e}",
        o.status,
        stdout(&o)
    );
    assert!(Inspected::of(&without).ending("/libgcc_s.so.1").is_empty());
}

// ----------------------------------------------------------- .note.dlopen

#[test]
fn dlopen_notes_bring_plugins_by_priority() {
    let dir = support::tempdir();
    let d = dir.path();
    // app/bin/plugins with RUNPATH $ORIGIN/../lib; its plugins in app/lib.
    let lib = d.join("app/lib");
    fs::create_dir_all(&lib).unwrap();
    fs::create_dir_all(d.join("app/bin")).unwrap();
    let so = |name: &str| lib.join(name);
    let soname = |name: &str| format!("-Wl,-soname,{name}");
    gcc(&[
        &"-shared",
        &"-fPIC",
        &soname("libplugdep.so.1"),
        &"-o",
        &so("libplugdep.so.1"),
        &fixture("plugdep.c"),
    ]);
    gcc(&[
        &"-shared",
        &"-fPIC",
        &"-DNAME=plugreq",
        &"-DDEP",
        &soname("libplugreq.so.1"),
        &"-o",
        &so("libplugreq.so.1"),
        &fixture("plugin.c"),
        &format!("-L{}", lib.display()),
        &"-l:libplugdep.so.1",
        &"-Wl,-rpath,$ORIGIN",
    ]);
    gcc(&[
        &"-shared",
        &"-fPIC",
        &"-DNAME=plugsug",
        &soname("libplugsug.so.1"),
        &"-o",
        &so("libplugsug.so.1"),
        &fixture("plugin.c"),
    ]);
    gcc(&[
        &"-o",
        &d.join("app/bin/plugins"),
        &fixture("plugins.c"),
        &"-ldl",
        &"-Wl,-rpath,$ORIGIN/../lib",
        &"-Wl,--enable-new-dtags",
    ]);

    let text = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\n{extra}\n[config]\nentrypoint = [\"/opt/plug/bin/plugins\"]\n\n\
             [[binary]]\nsrc = \"app/bin/plugins\"\ndest = \"/opt/plug/bin/plugins\"\n"
        )
    };
    let default = recipe(d, "default", &text("default", ""));
    let images = [
        (build(&default), "default", true, false),
        (
            build(&recipe(
                d,
                "suggested",
                &text("suggested", "dlopen = \"suggested\""),
            )),
            "suggested",
            true,
            true,
        ),
        (
            build(&recipe(d, "none", &text("none", "dlopen = \"none\""))),
            "none",
            false,
            false,
        ),
    ];
    let line = |soname: &str, loaded: bool, what: &str| {
        if loaded {
            format!("{soname}: loaded ({what})\n")
        } else {
            format!("{soname}: not loaded\n")
        }
    };
    for (layout, name, req, sug) in &images {
        let img = Inspected::of(layout);
        let has = |f: &str| img.has(&format!("/opt/plug/lib/{f}"));
        assert_eq!(
            (
                has("libplugreq.so.1"),
                has("libplugdep.so.1"),
                has("libplugsug.so.1")
            ),
            (*req, *req, *sug),
            "dlopen = {name}: libplugreq (+ its libplugdep), libplugsug in the image"
        );
        // The program finds in the image exactly what was put there.
        assert_eq!(
            run_ok(layout, &[]),
            line("libplugreq.so.1", *req, "plugreq using plugdep")
                + &line("libplugsug.so.1", *sug, "plugsug using nothing"),
            "dlopen = {name}: what the program loaded"
        );
    }

    // `why` names the note, for the plugin and for its own dependency.
    let why = |path: &str| ok(bareroot().arg("why").arg(&default).arg(path));
    let w = why("/opt/plug/lib/libplugreq.so.1");
    assert!(
        w.contains("needs libplugreq.so.1 (.note.dlopen)"),
        "why libplugreq.so.1:\n{w}"
    );
    let w = why("/opt/plug/lib/libplugdep.so.1");
    assert!(
        w.contains("(.note.dlopen)") && w.contains("needs libplugdep.so.1"),
        "why libplugdep.so.1:\n{w}"
    );
    let w = ok(bareroot()
        .arg("why")
        .arg(&images[0].0)
        .arg("/opt/plug/lib/libplugreq.so.1"));
    assert!(w.contains(".note.dlopen"), "why on the image:\n{w}");

    // A required plugin that cannot be found fails the build, naming it.
    fs::remove_file(so("libplugreq.so.1")).unwrap();
    let e = build_fails(&recipe(d, "missing", &text("missing", "")));
    assert!(e.contains("libplugreq.so.1"), "{e}");
}

// -------------------------------------------------------------- [[library]]

#[test]
fn library_entries_come_with_their_closure() {
    let dir = support::tempdir();
    let d = dir.path();
    gcc(&[&"-o", &d.join("dlcall"), &fixture("dlcall.c"), &"-ldl"]);
    let r = recipe(
        d,
        "library",
        "name = \"library\"\n[config]\nentrypoint = [\"/usr/bin/dlcall\"]\n\
         cmd = [\"libz.so.1\", \"zlibVersion\"]\n\n\
         [[binary]]\nsrc = \"dlcall\"\n\n\
         [[library]]\nname = \"libz.so.1\"\n\n\
         [[library]]\nname = \"/usr/lib/x86_64-linux-gnu/libssl.so.3\"\n",
    );
    let layout = build(&r);
    let img = Inspected::of(&layout);
    let multiarch = "/usr/lib/x86_64-linux-gnu";
    assert!(img.has(&format!("{multiarch}/libz.so.1")));
    assert!(img.has(&format!("{multiarch}/libssl.so.3")));
    assert!(
        img.has(&format!("{multiarch}/libcrypto.so.3")),
        "libssl.so.3's closure (libcrypto.so.3) is in the image"
    );
    // The program dlopens libz.so.1 by soname and calls it.
    let out = run_ok(&layout, &[]);
    assert!(
        out.starts_with("libz.so.1: zlibVersion() = 1."),
        "dlcall printed {out:?}"
    );

    let e = build_fails(&recipe(
        d,
        "nolib",
        "name = \"nolib\"\n[[binary]]\nsrc = \"dlcall\"\n\n\
         [[library]]\nname = \"libbareroot-missing.so.7\"\n",
    ));
    assert!(
        e.contains("[[library]] #1") && e.contains("libbareroot-missing.so.7"),
        "{e}"
    );
}

// ------------------------------------------------------------ ld.so.cache

#[test]
fn ld_so_cache_lets_dlopen_find_plugins_outside_the_default_dirs() {
    let dir = support::tempdir();
    let d = dir.path();
    gcc(&[&"-o", &d.join("dlcall"), &fixture("dlcall.c"), &"-ldl"]);
    gcc(&[
        &"-shared",
        &"-fPIC",
        &"-DNAME=plug",
        &"-Wl,-soname,libplug.so.1",
        &"-o",
        &d.join("libplug.so.1"),
        &fixture("plugin.c"),
    ]);
    let text = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\n{extra}\n[config]\nentrypoint = [\"/usr/bin/dlcall\"]\n\
             cmd = [\"libplug.so.1\", \"plug_name\"]\n\n\
             [[binary]]\nsrc = \"dlcall\"\n\n\
             [[file]]\nsrc = \"libplug.so.1\"\ndest = \"/opt/plugins/libplug.so.1\"\n"
        )
    };
    let with = build(&recipe(d, "cache", &text("cache", "")));
    let without = build(&recipe(
        d,
        "nocache",
        &text("nocache", "ld_so_cache = false"),
    ));

    assert_eq!(
        run_ok(&with, &[]),
        "libplug.so.1: plug_name() = plug using nothing\n"
    );
    let o = run_image(&without, &[]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("libplug.so.1: cannot open shared object file"),
        "without ld.so.cache dlopen should not find it ({}):\n{e}",
        o.status
    );
    assert!(!Inspected::of(&without).has("/etc/ld.so.cache"));

    // glibc's own ldconfig reads the generated cache.
    let cache = d.join("ld.so.cache");
    fs::write(&cache, layer_file(&with, "/etc/ld.so.cache")).unwrap();
    let ldconfig = ["/usr/sbin/ldconfig", "/sbin/ldconfig"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| require("ldconfig", "libc-bin"));
    let listed = ok(Command::new(ldconfig).arg("-p").arg("-C").arg(&cache));
    assert!(
        listed
            .lines()
            .any(|l| l.trim() == "libplug.so.1 (libc6,x86-64) => /opt/plugins/libplug.so.1"),
        "ldconfig -p -C:\n{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.trim() == "libc.so.6 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libc.so.6"),
        "ldconfig -p -C:\n{listed}"
    );
}

// ------------------------------------------------------- symbol versions

#[test]
fn symbol_versions_are_checked_at_build_time() {
    let dir = support::tempdir();
    let d = dir.path();
    // v2/ and v1/: the same program (linked against the v2 library, so it
    // needs f2@LIBX_2) next to the v2 or the v1-only libx.so.1.
    for v in ["v1", "v2"] {
        fs::create_dir_all(d.join(v).join("bin")).unwrap();
        fs::create_dir_all(d.join(v).join("lib")).unwrap();
    }
    let map = |v: &str| {
        format!(
            "-Wl,--version-script={}",
            fixture(&format!("libx-{v}.map")).display()
        )
    };
    gcc(&[
        &"-shared",
        &"-fPIC",
        &"-DV2",
        &map("v2"),
        &"-Wl,-soname,libx.so.1",
        &"-o",
        &d.join("v2/lib/libx.so.1"),
        &fixture("libx.c"),
    ]);
    gcc(&[
        &"-shared",
        &"-fPIC",
        &map("v1"),
        &"-Wl,-soname,libx.so.1",
        &"-o",
        &d.join("v1/lib/libx.so.1"),
        &fixture("libx.c"),
    ]);
    gcc(&[
        &"-o",
        &d.join("v2/bin/usex"),
        &fixture("usex.c"),
        &format!("-L{}", d.join("v2/lib").display()),
        &"-l:libx.so.1",
        &"-Wl,-rpath,$ORIGIN/../lib",
    ]);
    fs::copy(d.join("v2/bin/usex"), d.join("v1/bin/usex")).unwrap();
    let text = |v: &str| {
        format!(
            "name = \"{v}\"\n[config]\nentrypoint = [\"/app/bin/usex\"]\n\n\
             [[binary]]\nsrc = \"{v}/bin/usex\"\ndest = \"/app/bin/usex\"\n"
        )
    };

    let e = build_fails(&recipe(d, "v1", &text("v1")));
    let prog = d.join("v1/bin/usex");
    let want = format!(
        "`{}` needs `LIBX_2` from `libx.so.1`, the image's libx.so.1 provides up to `LIBX_1`",
        prog.display()
    );
    assert!(e.contains(&want), "expected {want:?} in:\n{e}");

    let layout = build(&recipe(d, "v2", &text("v2")));
    assert_eq!(run_ok(&layout, &[]), "f1() = 1, f2() = 2\n");
}

// ------------------------------------------------------------------ users

#[test]
fn users_own_files_and_name_the_config_user() {
    let dir = support::tempdir();
    let d = dir.path();
    fs::write(d.join("app.conf"), "listen = 8080\n").unwrap();
    let text = |owner: &str, user: &str| {
        format!(
            "name = \"users\"\n\n[[user]]\nname = \"app\"\nuid = 1000\n\n\
             [config]\nentrypoint = [\"/usr/bin/getent\"]\ncmd = [\"passwd\", \"app\"]\n\
             user = \"{user}\"\n\n\
             [[binary]]\nsrc = \"/usr/bin/getent\"\n\n\
             [[file]]\nsrc = \"app.conf\"\ndest = \"/etc/app.conf\"\nowner = \"{owner}\"\n"
        )
    };
    let layout = build(&recipe(d, "users", &text("app", "app")));
    let img = Inspected::of(&layout);
    assert_eq!(img.config["User"], "1000:1000", "config: {}", img.config);
    let passwd = String::from_utf8(layer_file(&layout, "/etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l == "app:x:1000:1000:app:/home/app:/sbin/nologin"),
        "/etc/passwd:\n{passwd}"
    );
    let group = String::from_utf8(layer_file(&layout, "/etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l == "app:x:1000:"),
        "/etc/group:\n{group}"
    );
    assert_eq!(
        img.meta("/home/app"),
        ("dir".into(), "0700".into(), 1000, 1000)
    );
    assert_eq!(
        img.meta("/etc/app.conf"),
        ("file".into(), "0644".into(), 1000, 1000)
    );
    // The image's own getent finds the user.
    assert_eq!(
        run_ok(&layout, &[]),
        "app:x:1000:1000:app:/home/app:/sbin/nologin\n"
    );

    for (name, owner, user) in [
        ("ghost-owner", "ghost", "app"),
        ("ghost-user", "app", "ghost"),
    ] {
        let e = build_fails(&recipe(d, name, &text(owner, user)));
        assert!(e.contains("\"ghost\""), "{name}: {e}");
    }
}
