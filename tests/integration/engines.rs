//! Real engines: Debian's Docker Engine (`dockerd`, docker.io) and
//! `containerd`, started by these tests in a temporary directory of their
//! own (not the machine's /etc, /var/lib or /opt; only containerd 1.6's
//! shim sockets go to /run/containerd/s, a path it hard-codes) and stopped
//! at exit.
//! Every recipe in recipes/ is built once (docker-archive and oci-archive,
//! and a push to a loopback docker-registry for the multi-arch and the
//! base-image recipes), then loaded and run by `docker`, by `ctr` and by
//! `podman` (its own store, as support.rs sets it up), and the pushed ones
//! pulled by `docker` and `podman`; the output must be what the README (or
//! the recipe's header) says it prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::distribution::Registry;
use crate::support::{self, bareroot, repo, require, run, stderr, stdout, tempdir};

// ----------------------------------------------------------------- daemons

/// A daemon in its own process group, its output in `log`.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own group: stopping it stops what it started with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon { name, child, log }
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("\n{} log (last 40 lines):\n{tail}", self.name)
    }

    fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the group this daemon leads.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), sig) };
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// containerd, dockerd on it, and a registry; dropped in reverse order of
/// need (dockerd, containerd, then leftovers such as shims, then the dir).
struct Engines {
    dockerd: Option<Daemon>,
    containerd: Option<Daemon>,
    registry: Option<Registry>,
    dir: Option<tempfile::TempDir>,
}

/// What the tests use: paths and addresses only.
#[derive(Clone)]
struct Endpoints {
    docker: PathBuf,
    docker_host: String,
    docker_config: PathBuf,
    containerd_sock: PathBuf,
    /// For ctr run's FIFOs and runc's state (default: under /run/containerd).
    ctr_run_dir: PathBuf,
    registry: String,
}

impl Drop for Engines {
    fn drop(&mut self) {
        drop(self.dockerd.take());
        drop(self.containerd.take());
        drop(self.registry.take());
        if let Some(dir) = self.dir.take() {
            // containerd's shims leave its process group; they name the
            // socket in their arguments.
            kill_processes_naming(dir.path());
            unmount_under(dir.path());
            let _ = dir.close();
        }
    }
}

/// SIGKILL every process whose command line mentions `dir`, and wait
/// (up to 10 s) until none is left: a dying daemon still writes there.
fn kill_processes_naming(dir: &Path) {
    let needle = dir.as_os_str().as_encoded_bytes();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut found = false;
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // A zombie's command line is empty: it is gone for our purpose.
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                found = true;
                // SAFETY: kill(2) on a pid read from /proc.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !found || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Detach every mount under `dir`, deepest first: dockerd bind-mounts its
/// data root onto itself and, when killed, leaves it mounted.
fn unmount_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let Ok(c) = std::ffi::CString::new(m) else {
            continue;
        };
        // SAFETY: umount2(2) with a NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

static ENGINES: Mutex<Option<Engines>> = Mutex::new(None);
static ENDPOINTS: OnceLock<Endpoints> = OnceLock::new();

extern "C" fn stop_engines() {
    let mut slot = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    drop(slot.take());
}

/// The engines of this test process, started by the first test asking.
fn engines() -> Endpoints {
    ENDPOINTS
        .get_or_init(|| {
            let mut slot = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: registers a plain function run by exit(3), after the
            // test harness returns or calls process::exit.
            unsafe { libc::atexit(stop_engines) };
            let mut engines = Engines {
                dockerd: None,
                containerd: None,
                registry: None,
                dir: None,
            };
            let endpoints = start(&mut engines);
            *slot = Some(engines);
            endpoints
        })
        .clone()
}

fn start(engines: &mut Engines) -> Endpoints {
    let containerd = require("containerd", "containerd");
    require("containerd-shim-runc-v2", "containerd");
    require("ctr", "containerd");
    require("runc", "runc");
    let dockerd = require("dockerd", "docker.io");
    // The client of the same package (a newer one may come first in PATH).
    let docker = PathBuf::from("/usr/bin/docker");
    assert!(
        docker.is_file(),
        "this test needs /usr/bin/docker: install it with `apt-get install docker.io` \
         (or run scripts/test.sh)"
    );
    sweep_stale_runs();
    // Unix socket paths are limited to 108 bytes: a short directory in /tmp.
    let dir = tempfile::Builder::new()
        .prefix("brE")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path().to_path_buf();
    fs::write(d.join("owner"), std::process::id().to_string()).unwrap();
    engines.dir = Some(dir);
    let sock = d.join("c.sock");
    // A config of our own: without one containerd reads
    // /etc/containerd/config.toml, and its opt plugin writes /opt/containerd.
    let config = d.join("containerd.toml");
    fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{0}/c-root\"\nstate = \"{0}/c-state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{1}\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{0}/c-opt\"\n",
            d.display(),
            sock.display()
        ),
    )
    .unwrap();
    let mut c = Daemon::spawn(
        "containerd",
        Command::new(containerd)
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(d.join("c-root"))
            .arg("--state")
            .arg(d.join("c-state"))
            .arg("--address")
            .arg(&sock),
        d.join("containerd.log"),
    );
    wait_for(&mut c, "ctr version", || {
        run(Command::new("ctr")
            .arg("--address")
            .arg(&sock)
            .arg("version"))
        .status
        .success()
    });
    engines.containerd = Some(c);

    // dockerd's own config file: the default, /etc/docker/daemon.json, is
    // the machine's, and its trust key would go to /etc/docker/key.json.
    let daemon_json = d.join("daemon.json");
    fs::write(
        &daemon_json,
        format!(
            "{{\"deprecated-key-path\": \"{}\"}}\n",
            d.join("key.json").display()
        ),
    )
    .unwrap();
    let docker_host = format!("unix://{}", d.join("d.sock").display());
    let mut dd = Daemon::spawn(
        "dockerd",
        Command::new(dockerd)
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(d.join("d-root"))
            .arg("--exec-root")
            .arg(d.join("d-exec"))
            .arg("--host")
            .arg(&docker_host)
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .arg("--containerd")
            .arg(&sock)
            .args(["--storage-driver", "vfs"])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"]),
        d.join("dockerd.log"),
    );
    let endpoints = Endpoints {
        docker,
        docker_host,
        docker_config: d.join("docker-config"),
        containerd_sock: sock,
        ctr_run_dir: d.join("ctr-run"),
        registry: String::new(),
    };
    wait_for(&mut dd, "docker version", || {
        run(&mut docker_cmd(&endpoints, &["version"]))
            .status
            .success()
    });
    engines.dockerd = Some(dd);

    let registry = Registry::start(None);
    let endpoints = Endpoints {
        registry: registry.host(),
        ..endpoints
    };
    engines.registry = Some(registry);
    endpoints
}

/// A test process killed outright (SIGKILL, a CI timeout) runs no atexit:
/// its daemons, in their own process groups, outlive it. Stop those of
/// every /tmp/brE* directory whose owner process is gone.
fn sweep_stale_runs() {
    for e in fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("brE") {
            continue;
        }
        let Some(owner) = fs::read_to_string(path.join("owner"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            kill_processes_naming(&path);
            unmount_under(&path);
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// Poll `ready` for 60 s; fail with the daemon's log.
fn wait_for(daemon: &mut Daemon, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}) before answering `{what}`{}",
                daemon.name,
                daemon.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer `{what}` within 60 s{}",
            daemon.name,
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn docker_cmd(e: &Endpoints, args: &[&str]) -> Command {
    let mut c = Command::new(&e.docker);
    c.env("DOCKER_HOST", &e.docker_host)
        .env("DOCKER_CONFIG", &e.docker_config)
        .args(args);
    c
}

fn ctr_cmd(e: &Endpoints, namespace: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ctr");
    c.arg("--address")
        .arg(&e.containerd_sock)
        .args(["--namespace", namespace])
        .args(args);
    c
}

/// Run, assert success (with the daemons' logs), return stdout.
fn ok(cmd: &mut Command, what: &str) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}{}",
        o.status,
        stdout(&o),
        stderr(&o),
        daemon_logs()
    );
    stdout(&o)
}

fn daemon_logs() -> String {
    let slot = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(e) = slot.as_ref() else {
        return String::new();
    };
    [&e.dockerd, &e.containerd]
        .into_iter()
        .flatten()
        .map(Daemon::log)
        .collect()
}

// ----------------------------------------------------------------- recipes

/// What a recipe's image prints, as the README's "Example recipes" table
/// (or, for the recipes it omits, the recipe's header comment) says.
#[derive(Clone, Copy)]
enum Says {
    Exactly(&'static str),
    /// A JSON object with these string fields (jq's layout is its own).
    Json(&'static [(&'static str, &'static str)]),
    /// `hello from <uname -m> (64-bit)`: the host's platform of the index.
    HostHello,
    /// `python 3.11 with ssl (OpenSSL 3.0...), sqlite3 3.40.1, ctypes, lzma`
    Python,
}

impl Says {
    fn matches(self, out: &str) -> bool {
        match self {
            Says::Exactly(s) => out == s,
            Says::Json(fields) => {
                let v: serde_json::Value = match serde_json::from_str(out) {
                    Ok(v) => v,
                    Err(_) => return false,
                };
                v.as_object().is_some_and(|o| o.len() == fields.len())
                    && fields.iter().all(|(k, want)| v[k] == *want)
            }
            Says::HostHello => out == format!("hello from {} (64-bit)\n", std::env::consts::ARCH),
            Says::Python => {
                out.starts_with("python 3.11 with ssl (OpenSSL 3.")
                    && out.contains("), sqlite3 3.")
                    && out.ends_with(", ctypes, lzma\n")
                    && out.lines().count() == 1
            }
        }
    }
}

/// Paths a recipe needs, and how to make or install each.
type Needs = &'static [(&'static str, &'static str)];

/// Every recipe in recipes/, what it prints, and the inputs it needs that
/// scripts/test.sh makes or installs (path, how to get it).
const RECIPES: &[(&str, Says, Needs)] = &[
    (
        "busybox",
        Says::Exactly("hello from busybox\nLinux\n"),
        &[("/bin/busybox", "apt-get install busybox-static")],
    ),
    (
        "distroless",
        Says::Exactly("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
        &[],
    ),
    (
        "hello-files",
        Says::Exactly("hello from a bareroot image\n"),
        &[],
    ),
    (
        "go",
        Says::Exactly("hello from a Go program (example.com/greeting v1.2.3)\n"),
        &[(
            "recipes/go/build/hello-go",
            "bash recipes/go/build.sh (apt-get install golang-go)",
        )],
    ),
    ("hello", Says::Exactly("hello from a bareroot image\n"), &[]),
    (
        "jq",
        Says::Json(&[("image", "jq"), ("built_by", "bareroot")]),
        &[("/usr/bin/jq", "apt-get install jq")],
    ),
    (
        "multiarch",
        Says::HostHello,
        &[(
            "recipes/multiarch/build/x86_64-linux-gnu/hello",
            "bash recipes/multiarch/build.sh",
        )],
    ),
    (
        "on-debian",
        Says::Exactly("jq-1.6\n"),
        &[(
            "recipes/on-debian/bookworm.tar",
            "bash recipes/on-debian/make-base.sh (mmdebstrap)",
        )],
    ),
    (
        "shell",
        Says::Exactly("hello from a bareroot shell image\n"),
        &[],
    ),
    (
        "python",
        Says::Python,
        &[("/usr/bin/python3.11", "apt-get install python3")],
    ),
    (
        "tools-arm64",
        Says::Json(&[("tool", "jq")]),
        &[(
            "target/test-sysroots/debian-arm64/usr/bin/jq",
            "scripts/test.sh (scripts/debian-sysroot.sh arm64 target/test-sysroots/debian-arm64 …)",
        )],
    ),
];

/// The recipes pushed to the registry in the same build (`docker pull`).
const PUSHED: &[&str] = &["multiarch", "on-debian"];

/// One build of a recipe: its archives, and its push if any.
struct Archives {
    docker: PathBuf,
    oci: PathBuf,
    /// `REF` pushed to, and the digest the build printed.
    pushed: Option<(String, String)>,
}

fn says(name: &str) -> Says {
    RECIPES
        .iter()
        .find(|r| r.0 == name)
        .expect("a recipe of RECIPES")
        .1
}

/// Build `name` once per test process: `--docker-archive` (host platform),
/// `--oci-archive`, and `--push` for the PUSHED ones.
fn archives(name: &'static str) -> &'static Archives {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static BUILT: OnceLock<BTreeMap<&'static str, OnceLock<Archives>>> = OnceLock::new();
    let cells = BUILT.get_or_init(|| RECIPES.iter().map(|r| (r.0, OnceLock::new())).collect());
    cells[name].get_or_init(|| {
        let (_, _, needs) = RECIPES.iter().find(|r| r.0 == name).unwrap();
        for (path, how) in *needs {
            let p = support::repo().join(path);
            assert!(
                p.exists(),
                "recipes/{name}.toml needs {}: {how}",
                p.display()
            );
        }
        let dir = DIR.get_or_init(|| support::run_dir("engines"));
        let a = Archives {
            docker: dir.join(format!("{name}.docker.tar")),
            oci: dir.join(format!("{name}.oci.tar")),
            pushed: None,
        };
        let mut cmd = bareroot();
        cmd.current_dir(dir)
            .arg("build")
            .arg(support::repo().join("recipes").join(format!("{name}.toml")))
            .arg("--docker-archive")
            .arg(&a.docker)
            .arg("--oci-archive")
            .arg(&a.oci)
            .arg("--quiet");
        let to = PUSHED
            .contains(&name)
            .then(|| format!("{}/engines/{name}:latest", engines().registry));
        if let Some(to) = &to {
            cmd.arg("--push").arg(to);
        }
        let out = ok(&mut cmd, &format!("bareroot build recipes/{name}.toml"));
        let digest = support::last_line(&out);
        assert!(digest.starts_with("sha256:"), "build printed {out:?}");
        Archives {
            pushed: to.map(|t| (t, digest)),
            ..a
        }
    })
}

fn assert_says(name: &str, engine: &str, out: &str) {
    assert!(
        says(name).matches(out),
        "recipes/{name}.toml under {engine} printed {out:?}, not what the README says"
    );
}

/// `docker load` the archive, run the image it names, remove it.
fn docker_load_and_run(name: &'static str) {
    let e = engines();
    let a = archives(name);
    let loaded = ok(
        docker_cmd(&e, &["load", "-i"]).arg(&a.docker),
        &format!("docker load -i {name}"),
    );
    let image = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("docker load named no image: {loaded:?}"))
        .trim()
        .to_string();
    let out = ok(
        &mut docker_cmd(&e, &["run", "--rm", "--network", "none", &image]),
        &format!("docker run {image}"),
    );
    assert_says(name, &format!("docker run {image}"), &out);
}

/// `ctr images import` the oci-archive into a namespace of its own (ctr
/// names every import `import-DATE:latest` today: they would clash), run
/// the image, remove it. Returns the name ctr gave it.
fn ctr_import_and_run(name: &'static str, ns: &str) -> String {
    let e = engines();
    let a = archives(name);
    ok(
        ctr_cmd(&e, ns, &["images", "import", "--snapshotter", "native"]).arg(&a.oci),
        &format!("ctr images import {name}"),
    );
    let listed = ok(
        &mut ctr_cmd(&e, ns, &["images", "ls", "-q"]),
        "ctr images ls",
    );
    let images: Vec<&str> = listed.lines().collect();
    assert_eq!(
        images.len(),
        1,
        "one import, one image in namespace {ns}: {listed:?}"
    );
    let image = images[0].to_string();
    let out = ok(
        ctr_cmd(&e, ns, &["run", "--snapshotter", "native", "--rm"])
            .arg("--fifo-dir")
            .arg(e.ctr_run_dir.join("fifo"))
            .arg("--runc-root")
            .arg(e.ctr_run_dir.join("runc"))
            .args([&image, ns]),
        &format!("ctr run {image}"),
    );
    assert_says(name, &format!("ctr run {image}"), &out);
    ok(
        &mut ctr_cmd(&e, ns, &["images", "rm", &image]),
        "ctr images rm",
    );
    image
}

/// `podman load` the oci-archive (podman names it from the archive's
/// index), run the image it names, remove it.
fn podman_load_and_run(name: &'static str) {
    let podman = support::Podman::get();
    let a = archives(name);
    let loaded = ok(
        podman.cmd().args(["load", "-q", "-i"]).arg(&a.oci),
        &format!("podman load -i {name}.oci.tar"),
    );
    let image = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("podman load named no image: {loaded:?}"))
        .trim()
        .to_string();
    assert!(
        image.starts_with("docker.io/library/"),
        "podman names the image by its full name, not {image}"
    );
    podman_run(name, &image);
}

/// `podman run` an image in podman's store, then remove it.
fn podman_run(name: &str, image: &str) {
    let podman = support::Podman::get();
    let out = ok(
        podman
            .cmd()
            .args(["run", "--rm", "--network", "none", image])
            .stdin(Stdio::null()),
        &format!("podman run {image}"),
    );
    let _ = support::run(podman.cmd().args(["rmi", "--force", image]));
    assert_says(name, &format!("podman run {image}"), &out);
}

#[test]
fn recipes_table_lists_every_recipe() {
    let on_disk: BTreeSet<String> = fs::read_dir(support::repo().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = RECIPES.iter().map(|r| r.0.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "a recipe without an engine test, or a test without its recipe"
    );
}

macro_rules! recipe_tests {
    ($($test:ident: $name:literal,)*) => {$(
        #[test]
        fn $test() {
            docker_load_and_run($name);
            ctr_import_and_run($name, concat!("bareroot-", $name));
            podman_load_and_run($name);
        }
    )*};
}

recipe_tests! {
    go_runs_under_docker_containerd_and_podman: "go",
    busybox_runs_under_docker_containerd_and_podman: "busybox",
    distroless_runs_under_docker_containerd_and_podman: "distroless",
    hello_files_runs_under_docker_containerd_and_podman: "hello-files",
    hello_runs_under_docker_containerd_and_podman: "hello",
    jq_runs_under_docker_containerd_and_podman: "jq",
    multiarch_runs_under_docker_containerd_and_podman: "multiarch",
    on_debian_runs_under_docker_containerd_and_podman: "on-debian",
    python_runs_under_docker_containerd_and_podman: "python",
    shell_runs_under_docker_containerd_and_podman: "shell",
    tools_arm64_runs_under_docker_containerd_and_podman: "tools-arm64",
}

/// `docker pull` of what `bareroot build --push` sent to the loopback
/// registry (Docker allows plain HTTP to 127.0.0.0/8 without
/// `--insecure-registry`), then run.
fn docker_pull_and_run(name: &'static str) {
    let e = engines();
    let (reference, digest) = archives(name).pushed.clone().expect("a PUSHED recipe");
    ok(
        &mut docker_cmd(&e, &["pull", &reference]),
        &format!("docker pull {reference}"),
    );
    let inspect = ok(
        &mut docker_cmd(
            &e,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .RepoDigests}} {{.Os}}/{{.Architecture}}",
                &reference,
            ],
        ),
        "docker image inspect",
    );
    let repo = reference.rsplit_once(':').unwrap().0;
    assert!(
        inspect.contains(&format!("\"{repo}@{digest}\"")),
        "docker pulled {reference} as {inspect:?}, not the {digest} bareroot pushed"
    );
    let out = ok(
        &mut docker_cmd(&e, &["run", "--rm", "--network", "none", &reference]),
        &format!("docker run {reference}"),
    );
    assert_says(name, &format!("docker run {reference}"), &out);
}

/// `podman pull` of the same push (plain HTTP: `--tls-verify=false`),
/// then run.
fn podman_pull_and_run(name: &'static str) {
    let (reference, digest) = archives(name).pushed.clone().expect("a PUSHED recipe");
    let podman = support::Podman::get();
    ok(
        podman
            .cmd()
            .args(["pull", "-q", "--tls-verify=false", &reference]),
        &format!("podman pull {reference}"),
    );
    let inspect = ok(
        podman.cmd().args([
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &reference,
        ]),
        "podman image inspect",
    );
    let repo = reference.rsplit_once(':').unwrap().0;
    assert!(
        inspect.contains(&format!("\"{repo}@{digest}\"")),
        "podman pulled {reference} as {inspect:?}, not the {digest} bareroot pushed"
    );
    podman_run(name, &reference);
}

#[test]
fn docker_and_podman_pull_and_run_the_pushed_multiarch_index() {
    docker_pull_and_run("multiarch");
    podman_pull_and_run("multiarch");
}

#[test]
fn docker_and_podman_pull_and_run_the_pushed_image_on_a_debian_base() {
    docker_pull_and_run("on-debian");
    podman_pull_and_run("on-debian");
}

/// ctr names an imported image by the archive index's
/// `io.containerd.image.name` annotation, else `import-DATE:latest`.
#[test]
fn ctr_import_names_the_image_by_its_full_name() {
    let image = ctr_import_and_run("shell", "bareroot-names");
    // From index.json's io.containerd.image.name (without it, ctr names
    // it import-DATE:latest).
    assert_eq!(image, "docker.io/library/shell:latest");
}

/// `build --load docker` and `--load containerd`: the image streamed into
/// the engine (no archive on disk), the engine's answer shown, and the
/// image runs under its name.
#[test]
fn build_load_hands_the_image_to_docker_and_to_containerd() {
    let e = engines();
    let tmp = tempdir();
    let recipe = repo().join("recipes/hello.toml");
    // bareroot runs `docker` from PATH: the packaged client first.
    let path = format!(
        "{}:{}",
        e.docker.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = run(bareroot()
        .env("PATH", &path)
        .env("DOCKER_HOST", &e.docker_host)
        .env("DOCKER_CONFIG", &e.docker_config)
        .args(["build", "--load", "docker", "--output"])
        .arg(tmp.path().join("docker"))
        .arg(&recipe));
    assert!(
        o.status.success(),
        "build --load docker: {}{}",
        stderr(&o),
        daemon_logs()
    );
    assert!(
        stderr(&o).contains("Loaded image: hello:latest"),
        "{}",
        stderr(&o)
    );
    let out = ok(
        &mut docker_cmd(&e, &["run", "--rm", "--network", "none", "hello:latest"]),
        "docker run hello:latest",
    );
    assert_says("hello", "docker run after --load docker", &out);

    let ns = "bareroot-load";
    let o = run(bareroot()
        .env("CONTAINERD_ADDRESS", &e.containerd_sock)
        .env("CONTAINERD_SNAPSHOTTER", "native")
        .args([
            "build",
            "--load",
            "containerd",
            "--namespace",
            ns,
            "--output",
        ])
        .arg(tmp.path().join("containerd"))
        .arg(&recipe));
    assert!(
        o.status.success(),
        "build --load containerd: {}{}",
        stderr(&o),
        daemon_logs()
    );
    let listed = ok(
        &mut ctr_cmd(&e, ns, &["images", "ls", "-q"]),
        "ctr images ls",
    );
    assert!(
        listed
            .lines()
            .any(|l| l == "docker.io/library/hello:latest"),
        "--load containerd names the image by its full name: {listed:?}"
    );
    let out = ok(
        ctr_cmd(&e, ns, &["run", "--snapshotter", "native", "--rm"])
            .arg("--fifo-dir")
            .arg(e.ctr_run_dir.join("fifo"))
            .arg("--runc-root")
            .arg(e.ctr_run_dir.join("runc"))
            .args(["docker.io/library/hello:latest", "load-hello"]),
        "ctr run after --load containerd",
    );
    assert_says("hello", "ctr run after --load containerd", &out);
    ok(
        &mut ctr_cmd(&e, ns, &["images", "rm", "docker.io/library/hello:latest"]),
        "ctr images rm",
    );
}

/// `[config] volumes`, labels and `[annotations]` as other tools read
/// them back: `docker image inspect` of the loaded image, and skopeo's
/// view of the layout.
#[test]
fn volumes_labels_and_annotations_read_back_by_docker_and_skopeo() {
    let e = engines();
    let tmp = tempdir();
    fs::write(tmp.path().join("hello.txt"), "hello\n").unwrap();
    let recipe = tmp.path().join("meta.toml");
    fs::write(
        &recipe,
        "name = \"bareroot-meta\"\n[config]\nvolumes = [\"/data\"]\n\
         labels = { \"org.example.team\" = \"infra\" }\n\
         [annotations]\n\"org.opencontainers.image.title\" = \"meta\"\n\
         [[file]]\nsrc = \"hello.txt\"\ndest = \"/hello.txt\"\n",
    )
    .unwrap();
    let layout = tmp.path().join("layout");
    let archive = tmp.path().join("meta.tar");
    let o = run(bareroot()
        .args(["build", "--quiet", "--output"])
        .arg(&layout)
        .arg("--docker-archive")
        .arg(&archive)
        .arg(&recipe));
    assert!(o.status.success(), "{}", stderr(&o));
    ok(
        docker_cmd(&e, &["load", "-i"]).arg(&archive),
        "docker load of the meta image",
    );
    let inspected = ok(
        &mut docker_cmd(&e, &["image", "inspect", "bareroot-meta:latest"]),
        "docker image inspect",
    );
    let v: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let config = &v[0]["Config"];
    assert!(config["Volumes"]["/data"].is_object(), "{config}");
    assert_eq!(config["Labels"]["org.example.team"], "infra", "{config}");

    let skopeo = require("skopeo", "skopeo");
    let raw = ok(
        Command::new(&skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", layout.display())),
        "skopeo inspect --raw",
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        m["annotations"]["org.opencontainers.image.title"], "meta",
        "{m}"
    );
    assert!(
        m["annotations"]["org.opencontainers.image.created"].is_string(),
        "{m}"
    );
    let cfg = ok(
        Command::new(&skopeo)
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:latest", layout.display())),
        "skopeo inspect --config",
    );
    let c: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert!(c["config"]["Volumes"]["/data"].is_object(), "{c}");
}
