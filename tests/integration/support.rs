//! Shared helpers for the integration tests: the built binary, the repo,
//! required external tools, and a podman configuration these machines accept.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `bareroot` command (the binary cargo built for this test run).
pub fn bareroot() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bareroot"));
    c.env_remove("SOURCE_DATE_EPOCH");
    // Every build really builds (cache tests turn the cache back on).
    c.env("BAREROOT_NO_CACHE", "1");
    c
}

/// Run and capture; never panics on a non-zero exit.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run, assert success, return stdout.
pub fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Fail (never skip) when a tool the test needs is missing.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs `{tool}`: install it with `apt-get install {package}` \
             (or run scripts/test.sh, which installs every test dependency)"
        )
    })
}

/// Build a recipe into `out`, return the top digest (last stdout line).
pub fn build(recipe: &Path, out: &Path) -> String {
    let s = ok(bareroot()
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(out)
        .arg("--quiet"));
    last_line(&s)
}

pub fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or("").trim().to_string()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bareroot-test-")
        .tempdir()
        .expect("create temp dir")
}

/// The podman settings these machines need (no systemd, no cgroup v2
/// delegation, no network): a containers.conf, vfs storage and private
/// root/runroot directories. Shared by every test in the run.
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    pub fn get() -> &'static Podman {
        static P: OnceLock<Podman> = OnceLock::new();
        P.get_or_init(|| {
            require("podman", "podman");
            require("runc", "runc");
            // One storage for every run, under target/: reused, never piling up in /tmp.
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("podman");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("containers.conf"),
                "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n",
            )
            .unwrap();
            Podman { dir }
        })
    }

    /// `podman <args>` with the settings above.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"));
        c
    }
}

/// A built layout and the top digest `bareroot build` printed.
pub struct Built {
    pub layout: PathBuf,
    pub digest: String,
}

/// `<target tmp>/<area>/<pid>`, new for this test process; directories of
/// earlier runs whose process is gone are removed first, so layouts never
/// pile up and concurrent runs never share one.
pub fn run_dir(area: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(area);
    std::fs::create_dir_all(&base).unwrap();
    for e in std::fs::read_dir(&base).unwrap().flatten() {
        let gone = e
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Build `recipe` into `dir/name` once per test process.
pub fn build_once<'a>(
    cell: &'a OnceLock<Built>,
    dir: &Path,
    recipe: &Path,
    name: &str,
) -> &'a Built {
    cell.get_or_init(|| {
        let layout = dir.join(name);
        let digest = build(recipe, &layout);
        assert!(
            digest.len() == 71 && digest.starts_with("sha256:"),
            "build {}: the last stdout line is not a digest: {digest:?}",
            recipe.display()
        );
        Built { layout, digest }
    })
}
