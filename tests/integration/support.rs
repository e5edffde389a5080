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

/// Where two OCI layouts differ, in words: the first JSON value that
/// differs along index → manifests → config, or the first tar entry of a
/// layer whose header or content differs. For reproducibility failures.
pub fn explain_layout_difference(a: &Path, b: &Path) -> String {
    let read = |dir: &Path, digest: &str| -> Vec<u8> {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap_or_default()
    };
    let json = |bytes: &[u8]| -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
    };
    let ia = json(&std::fs::read(a.join("index.json")).unwrap_or_default());
    let ib = json(&std::fs::read(b.join("index.json")).unwrap_or_default());
    let mut out = Vec::new();
    json_diff("index.json", &ia, &ib, &mut out);
    // Walk the descriptors both sides have, in order.
    let mut pending: Vec<(String, serde_json::Value, serde_json::Value)> =
        vec![("index.json".into(), ia, ib)];
    while let Some((at, va, vb)) = pending.pop() {
        let descs = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            let mut d: Vec<serde_json::Value> =
                v["manifests"].as_array().cloned().unwrap_or_default();
            if v["config"].is_object() {
                d.push(v["config"].clone());
            }
            d.extend(v["layers"].as_array().cloned().unwrap_or_default());
            d
        };
        for (i, (da, db)) in descs(&va).iter().zip(descs(&vb)).enumerate() {
            let (Some(ga), Some(gb)) = (da["digest"].as_str(), db["digest"].as_str()) else {
                continue;
            };
            if ga == gb {
                continue;
            }
            let what = format!("{at} → [{i}] {}", da["mediaType"].as_str().unwrap_or("?"));
            let (ba, bb) = (read(a, ga), read(b, gb));
            let media = da["mediaType"].as_str().unwrap_or("");
            if media.contains("layer") {
                out.push(format!(
                    "{what}: layers {ga} and {gb} differ: {}",
                    tar_diff(&ba, &bb, media)
                ));
            } else {
                let (ja, jb) = (json(&ba), json(&bb));
                json_diff(&what, &ja, &jb, &mut out);
                pending.push((what, ja, jb));
            }
        }
    }
    if out.is_empty() {
        out.push("no difference found in index, manifests, configs or layers".into());
    }
    out.join("\n")
}

fn json_diff(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                json_diff(
                    &format!("{at}.{k}"),
                    ma.get(k).unwrap_or(&Value::Null),
                    mb.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(va), Value::Array(vb)) if va.len() == vb.len() => {
            for (i, (x, y)) in va.iter().zip(vb).enumerate() {
                json_diff(&format!("{at}[{i}]"), x, y, out);
            }
        }
        _ if a != b => out.push(format!("{at}: {a} vs {b}")),
        _ => {}
    }
}

/// The first tar entry where two layers differ.
fn tar_diff(a: &[u8], b: &[u8], media: &str) -> String {
    use std::io::Read;
    let unpack = |bytes: &[u8]| -> Vec<u8> {
        let mut out = Vec::new();
        if media.ends_with("+gzip") {
            let _ = flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out);
        } else if media.ends_with("+zstd") {
            out = zstd::decode_all(bytes).unwrap_or_default();
        } else {
            out = bytes.to_vec();
        }
        out
    };
    let entries = |tar_bytes: &[u8]| -> Vec<(String, Vec<u8>)> {
        let mut ar = tar::Archive::new(tar_bytes);
        let mut v = Vec::new();
        for e in ar.entries().into_iter().flatten().flatten() {
            let mut e = e;
            let head = e.header().as_bytes().to_vec();
            let name = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mut data = Vec::new();
            let _ = e.read_to_end(&mut data);
            let mut all = head;
            all.extend(data);
            v.push((name, all));
        }
        v
    };
    let (ta, tb) = (unpack(a), unpack(b));
    if ta == tb {
        return "the tar streams are identical: the compressed bytes differ".into();
    }
    let (ea, eb) = (entries(&ta), entries(&tb));
    for (i, ((na, xa), (nb, xb))) in ea.iter().zip(&eb).enumerate() {
        if na != nb {
            return format!("entry {i} is {na:?} in one and {nb:?} in the other");
        }
        if xa != xb {
            let at = xa
                .iter()
                .zip(xb)
                .position(|(x, y)| x != y)
                .unwrap_or(xa.len().min(xb.len()));
            let part = if at < 512 { "header" } else { "content" };
            return format!("entry {i} {na:?} differs in its {part} (byte {at})");
        }
    }
    format!("one layer has {} entries, the other {}", ea.len(), eb.len())
}
