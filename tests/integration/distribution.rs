//! Distribution: the archives `bareroot build` writes and its native registry
//! push. Archives are compared byte for byte across builds, read by skopeo
//! and loaded and run by podman. Pushes go to Debian's docker-registry
//! (anonymous and htpasswd), and through an in-test HTTP/1.1 proxy
//! (std::net only) that can demand bearer tokens, expire them, and inject
//! faults (a 500, a dropped connection, an HTML 413, a refused mount) while
//! recording every request. What arrived is read back with skopeo, podman
//! or plain HTTP, never with bareroot.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{self, bareroot, last_line, require, run, stderr, stdout, tempdir, Podman};

const SHELL_SAYS: &str = "hello from a bareroot shell image\n";

/// The platforms of recipes/multiarch.toml (as the index names them: arm64
/// is normalized to arm64/v8) and their build.sh triplets.
const PLATFORMS: [(&str, &str); 5] = [
    ("linux/amd64", "x86_64-linux-gnu"),
    ("linux/arm64/v8", "aarch64-linux-gnu"),
    ("linux/arm/v7", "arm-linux-gnueabihf"),
    ("linux/riscv64", "riscv64-linux-gnu"),
    ("linux/386", "i386-linux-gnu"),
];

pub(crate) const USER: &str = "builder";
/// Must never appear in anything bareroot prints.
pub(crate) const PASSWORD: &str = "Pw-9f3c-never-printed";

// ---------------------------------------------------------------- fixtures

fn recipe(file: &str) -> PathBuf {
    support::repo().join("recipes").join(file)
}

/// Fail with a hint when build.sh has not cross-compiled the programs.
fn require_multiarch_programs() {
    for (_, triplet) in PLATFORMS {
        let hello = support::repo()
            .join("recipes/multiarch/build")
            .join(triplet)
            .join("hello");
        assert!(
            hello.is_file(),
            "{} is missing: run recipes/multiarch/build.sh or scripts/test.sh \
             (they cross-compile the multiarch programs)",
            hello.display()
        );
    }
}

use crate::support::Built;

fn layouts_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| support::run_dir("distribution"))
}

fn build_once(cell: &'static OnceLock<Built>, file: &str, name: &str) -> &'static Built {
    support::build_once(cell, layouts_dir(), &recipe(file), name)
}

pub(crate) fn shell() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    build_once(&B, "shell.toml", "shell")
}

pub(crate) fn multiarch() -> &'static Built {
    require_multiarch_programs();
    static B: OnceLock<Built> = OnceLock::new();
    build_once(&B, "multiarch.toml", "multiarch")
}

// ----------------------------------------------------------------- helpers

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Every config and layer blob of a layout's image, with its size.
pub(crate) fn layout_blobs(layout: &Path) -> BTreeMap<String, u64> {
    let index = read_json(&layout.join("index.json"));
    let mut blobs = BTreeMap::new();
    let mut todo = vec![index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json lists an image")
        .to_string()];
    while let Some(d) = todo.pop() {
        let v = read_json(&blob_path(layout, &d));
        if let Some(ms) = v["manifests"].as_array() {
            todo.extend(ms.iter().map(|m| m["digest"].as_str().unwrap().to_string()));
            continue;
        }
        let layers = v["layers"].as_array().expect("a manifest has layers");
        for b in std::iter::once(&v["config"]).chain(layers) {
            blobs.insert(
                b["digest"].as_str().unwrap().to_string(),
                b["size"].as_u64().unwrap(),
            );
        }
    }
    blobs
}

/// The regular files of a tar archive, by name.
fn tar_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut archive = tar::Archive::new(f);
    let mut files = BTreeMap::new();
    for e in archive.entries().expect("a tar archive") {
        let mut e = e.expect("a tar entry");
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    files
}

pub(crate) fn assert_success(o: &Output, what: &str, extra: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}{extra}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A failure as the CLI must report it: exit 2, one `bareroot: ` line.
pub(crate) fn assert_one_line_failure(o: &Output, what: &str) -> String {
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
    err.trim_end().to_string()
}

/// One `pushed REF@DIGEST: N blobs uploaded (B bytes), P already present,
/// M mounted` line.
#[derive(Debug, PartialEq, Eq)]
struct Pushed {
    reference: String,
    digest: String,
    uploaded: usize,
    bytes: u64,
    present: usize,
    mounted: usize,
}

fn parse_pushed(stderr: &str) -> Vec<Pushed> {
    stderr
        .lines()
        .filter(|l| l.starts_with("pushed "))
        .map(|line| {
            fn bad(line: &str) -> ! {
                panic!("unexpected push summary: {line:?}")
            }
            let (target, counts) = line["pushed ".len()..]
                .split_once(": ")
                .unwrap_or_else(|| bad(line));
            let (reference, digest) = target.rsplit_once('@').unwrap_or_else(|| bad(line));
            let n: Vec<u64> = counts
                .split_whitespace()
                .map(|w| w.trim_matches(|c| c == '(' || c == ')' || c == ','))
                .filter_map(|w| w.parse().ok())
                .collect();
            let [uploaded, bytes, present, mounted] = n[..] else {
                bad(line)
            };
            let p = Pushed {
                reference: reference.to_string(),
                digest: digest.to_string(),
                uploaded: uploaded as usize,
                bytes,
                present: present as usize,
                mounted: mounted as usize,
            };
            assert_eq!(
                format!(
                    "pushed {}@{}: {} blobs uploaded ({} bytes), {} already present, {} mounted",
                    p.reference, p.digest, p.uploaded, p.bytes, p.present, p.mounted
                ),
                line,
                "the push summary's format"
            );
            p
        })
        .collect()
}

/// Credentials only from what the test provides: no REGISTRY_AUTH_FILE, and
/// empty XDG_RUNTIME_DIR, DOCKER_CONFIG and HOME under `home`.
pub(crate) fn isolate(cmd: &mut Command, home: &Path) {
    for d in ["run", "docker"] {
        fs::create_dir_all(home.join(d)).unwrap();
    }
    cmd.env_remove("REGISTRY_AUTH_FILE")
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .env("HOME", home);
}

/// `{"auths":{"HOST":{"auth":"base64(user:password)"}}}`.
pub(crate) fn auth_json(host: &str, password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    serde_json::json!({"auths": {host: {"auth": b}}}).to_string()
}

pub(crate) fn basic(password: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    format!("Basic {b}")
}

fn skopeo_inspect_raw(reference: &str, extra: &[&str]) -> Output {
    run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .stdin(Stdio::null()))
}

/// The registry's bytes for `reference` hash to `digest`.
fn assert_registry_has(reference: &str, digest: &str, log: &str) -> Vec<u8> {
    let o = skopeo_inspect_raw(reference, &[]);
    assert_success(&o, &format!("skopeo inspect {reference}"), log);
    assert_eq!(sha256(&o.stdout), digest, "{reference} on the registry");
    o.stdout
}

/// `skopeo copy --all` from the registry into a fresh OCI layout, whose
/// index.json must point at `digest`.
fn assert_copies_back(reference: &str, digest: &str, dest: &Path) {
    let o = run(Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!(
            "oci:{}:{}",
            dest.display(),
            reference.rsplit_once(':').unwrap().1
        ))
        .stdin(Stdio::null()));
    assert_success(&o, &format!("skopeo copy {reference}"), "");
    let index = read_json(&dest.join("index.json"));
    assert_eq!(
        index["manifests"][0]["digest"], digest,
        "the layout skopeo copied from {reference}: {index}"
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = s.get(i + 1..i + 3).filter(|_| b[i] == b'%');
        if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

/// A port nothing listens on (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

// -------------------------------------------------------------- raw HTTP

type Head = (String, Vec<(String, String)>);

/// A start line and headers; None at EOF before anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((start, headers)))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        line.clear();
        r.read_line(&mut line)?;
    }
}

/// `GET path` on a fresh connection: status and body; None if nothing
/// answers.
pub(crate) fn http_get(
    port: u16,
    path: &str,
    authorization: Option<&str>,
) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(a) = authorization {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut r = BufReader::new(s);
    let (start, headers) = read_head(&mut r).ok()??;
    let status = start.split(' ').nth(1)?.parse().ok()?;
    let body = if is_chunked(&headers) {
        read_chunked(&mut r).ok()?
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b).ok()?;
        b
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

// ---------------------------------------------------------------- registry

/// Debian's docker-registry on a free loopback port, killed on drop.
pub(crate) struct Registry {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry shared by the tests running at the same time
    /// (each uses its own repositories).
    pub(crate) fn shared() -> Arc<Registry> {
        static SHARED: Mutex<Weak<Registry>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.upgrade() {
            return r;
        }
        let r = Arc::new(Registry::start(None));
        *slot = Arc::downgrade(&r);
        r
    }

    /// With `htpasswd`, every request needs HTTP basic credentials.
    pub(crate) fn start(htpasswd: Option<&Path>) -> Registry {
        let exe = require("docker-registry", "docker-registry");
        let dir = tempdir();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(f) = htpasswd {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                f.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        fs::write(&config_file, config).unwrap();
        let log = dir.path().join("registry.log");
        let out = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(exe);
        // docker-registry reads REGISTRY_* as configuration (the pull tests
        // set REGISTRY_AUTH_FILE for themselves).
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Any answer to /v2/ will do: 200, or 401 with auth.
        while http_get(port, "/v2/", None).is_none() {
            if let Some(status) = reg.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {port} within 20s:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("\nregistry log (last 40 lines):\n{tail}")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------- proxy

/// What the proxy does instead of forwarding a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer 500 (the request is not forwarded).
    Status500,
    /// Read half the body, then close the connection; with `forward`, that
    /// half reaches the registry first (then its connection is closed too).
    Drop { forward: bool },
    /// An nginx-style HTML 413 page.
    Html413,
    /// Forward, then flip the last byte of the body.
    Corrupt,
    /// Forward, then serve the body as a Docker schema1 manifest.
    Schema1,
    /// A 200 with a 5 MiB body as an OCI manifest.
    Oversized,
}

/// Inject `fault` once, into the first request matching after `skip` others.
pub(crate) struct Trigger {
    pub(crate) method: &'static str,
    pub(crate) path_has: &'static str,
    pub(crate) min_len: usize,
    pub(crate) skip: usize,
    pub(crate) fault: Fault,
    pub(crate) fired: bool,
}

impl Trigger {
    pub(crate) fn new(method: &'static str, path_has: &'static str, fault: Fault) -> Trigger {
        Trigger {
            method,
            path_has,
            min_len: 0,
            skip: 0,
            fault,
            fired: false,
        }
    }
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) authorization: Option<String>,
    pub(crate) content_length: Option<usize>,
    pub(crate) content_range: Option<String>,
    pub(crate) chunked: bool,
    /// Body bytes passed on to the registry.
    pub(crate) forwarded: usize,
    /// What the client was answered; 0 when the connection was dropped.
    pub(crate) status: u16,
    pub(crate) fault: Option<Fault>,
}

#[derive(Default)]
pub(crate) struct ProxyState {
    pub(crate) upstream: u16,
    /// Demand `Authorization: Bearer <token from /token>`.
    pub(crate) bearer: bool,
    /// A token is refused after authorizing this many requests.
    pub(crate) token_uses: Option<usize>,
    /// The Authorization /token requires.
    pub(crate) token_basic: Option<String>,
    /// Answer `?mount=` POSTs with a plain upload session (202).
    pub(crate) refuse_mounts: bool,
    /// Demand this `Authorization` (a `Basic` challenge otherwise).
    pub(crate) basic: Option<String>,
    /// The host:port the registry's Locations are rewritten to; the
    /// proxy's own when None.
    pub(crate) location_to: Option<String>,
    /// Answer blob GETs with a 307 to this host:port (a storage host).
    pub(crate) redirect_blobs: Option<String>,
    /// Bearer challenges name no scope: the client picks it.
    pub(crate) no_scope: bool,
    /// The scope of every token request.
    pub(crate) scopes: Vec<String>,
    pub(crate) triggers: Vec<Trigger>,
    pub(crate) token: Option<String>,
    pub(crate) token_used: usize,
    pub(crate) tokens: Vec<String>,
    /// Requests refused because they carried a used-up token.
    pub(crate) expired: usize,
    pub(crate) log: Vec<Seen>,
}

enum Action {
    Token(String),
    TokenRefused,
    BasicChallenge,
    Redirect(String),
    Challenge(String),
    Fault(Fault),
    Forward { strip_query: bool },
}

impl ProxyState {
    fn decide(
        &mut self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        len: usize,
        query: &str,
    ) -> Action {
        if path == "/token" {
            self.scopes
                .push(query_param(query, "scope").unwrap_or_default());
            if let Some(b) = &self.token_basic {
                if authorization != Some(b.as_str()) {
                    return Action::TokenRefused;
                }
            }
            let t = format!("tok-{}-q7Zx", self.tokens.len() + 1);
            self.tokens.push(t.clone());
            self.token = Some(t.clone());
            self.token_used = 0;
            return Action::Token(t);
        }
        if let Some(b) = &self.basic {
            if authorization != Some(b.as_str()) {
                return Action::BasicChallenge;
            }
        }
        if self.bearer {
            let presented = authorization.and_then(|a| a.strip_prefix("Bearer "));
            let current = presented.is_some() && presented == self.token.as_deref();
            let fresh = self.token_uses.is_none_or(|n| self.token_used < n);
            if !(current && fresh) {
                if current {
                    self.expired += 1;
                }
                let repo = path
                    .strip_prefix("/v2/")
                    .and_then(|p| {
                        ["/blobs/", "/manifests/", "/tags/"]
                            .iter()
                            .find_map(|s| p.find(s).map(|i| p[..i].to_string()))
                    })
                    .unwrap_or_default();
                return Action::Challenge(repo);
            }
            self.token_used += 1;
        }
        if let Some(to) = &self.redirect_blobs {
            if method == "GET" && path.contains("/blobs/") && !path.contains("/uploads/") {
                let q = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                return Action::Redirect(format!("http://{to}{path}{q}"));
            }
        }
        for t in &mut self.triggers {
            if t.fired || t.method != method || !path.contains(t.path_has) || len < t.min_len {
                continue;
            }
            if t.skip > 0 {
                t.skip -= 1;
                continue;
            }
            t.fired = true;
            return Action::Fault(t.fault);
        }
        Action::Forward {
            strip_query: self.refuse_mounts && method == "POST" && query.contains("mount="),
        }
    }
}

/// An HTTP/1.1 proxy in front of a registry: one request per connection.
pub(crate) struct Proxy {
    ip: [u8; 4],
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16) -> Proxy {
        Proxy::start_on([127, 0, 0, 1], upstream)
    }

    /// On another loopback address (127.0.0.2: another host, as far as
    /// credentials go).
    pub(crate) fn start_on(ip: [u8; 4], upstream: u16) -> Proxy {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
            .unwrap_or_else(|e| panic!("bind {ip:?}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let own = format!("{}:{port}", std::net::Ipv4Addr::from(ip));
        let state = Arc::new(Mutex::new(ProxyState {
            upstream,
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = Arc::clone(&state);
                    let own = own.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &state, &own);
                    });
                }
            })
        };
        Proxy {
            ip,
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("{}:{}", std::net::Ipv4Addr::from(self.ip), self.port)
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut ProxyState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The requests seen since the last call.
    pub(crate) fn take_log(&self) -> Vec<Seen> {
        self.with(|s| std::mem::take(&mut s.log))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(SocketAddr::from((self.ip, self.port)));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &[u8],
    head: bool,
) -> io::Result<()> {
    let mut s = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    out.write_all(s.as_bytes())?;
    if !head {
        out.write_all(body)?;
    }
    out.flush()
}

/// The request head as sent on to the registry.
fn upstream_head(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    upstream: u16,
    len: usize,
) -> String {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\n");
    for (k, v) in headers {
        let skip = [
            "host",
            "connection",
            "content-length",
            "transfer-encoding",
            "authorization",
            "expect",
        ];
        if !skip.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if len > 0 || matches!(method, "PUT" | "POST" | "PATCH") {
        s.push_str(&format!("Content-Length: {len}\r\n"));
    }
    s.push_str("Connection: close\r\n\r\n");
    s
}

/// Forward one request and return the registry's response, with its
/// `Location` rewritten to point at `location_to` (the proxy, or another).
fn forward(
    upstream: u16,
    location_to: &str,
    head: &str,
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(head.as_bytes())?;
    // Write the body while reading: a registry may answer (and close)
    // before it has read all of it.
    let mut w = up.try_clone()?;
    let owned = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&owned);
    });
    let mut raw = Vec::new();
    let read = up.read_to_end(&mut raw);
    let _ = writer.join();
    if raw.is_empty() {
        read?;
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no response head"))?;
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let status = start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut out = format!("{start}\r\n");
    for l in lines {
        let name = l.split(':').next().unwrap_or("");
        if name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if name.eq_ignore_ascii_case("location") {
            out.push_str(&l.replace(&format!("127.0.0.1:{upstream}"), location_to));
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&raw[split + 4..]);
    Ok((status, bytes))
}

fn serve(client: TcpStream, state: &Mutex<ProxyState>, own: &str) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = client.try_clone()?;
    let mut r = BufReader::new(client);
    let Some((start, headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    let mut parts = start.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let chunked = is_chunked(&headers);
    let content_length = header(&headers, "content-length").and_then(|v| v.parse().ok());
    if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let authorization = header(&headers, "authorization").map(str::to_string);
    let mut seen = Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        content_length,
        content_range: header(&headers, "content-range").map(str::to_string),
        chunked,
        forwarded: 0,
        status: 0,
        fault: None,
    };
    let len = content_length.unwrap_or(0);
    let (upstream, action, location_to, no_scope) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let a = s.decide(&method, &path, authorization.as_deref(), len, &query);
        let to = s.location_to.clone().unwrap_or_else(|| own.to_string());
        (s.upstream, a, to, s.no_scope)
    };
    let read_body = |r: &mut BufReader<TcpStream>| -> io::Result<Vec<u8>> {
        if chunked {
            read_chunked(r)
        } else {
            let mut b = vec![0; len];
            r.read_exact(&mut b)?;
            Ok(b)
        }
    };
    let head = method == "HEAD";
    let json = ("Content-Type", "application/json".to_string());
    match action {
        Action::Token(t) => {
            let body = format!(r#"{{"token":"{t}","expires_in":300}}"#);
            respond(&mut out, 200, "OK", &[json], body.as_bytes(), head)?;
            seen.status = 200;
        }
        Action::TokenRefused => {
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            respond(
                &mut out,
                401,
                "Unauthorized",
                &[json],
                body.as_bytes(),
                head,
            )?;
            seen.status = 401;
        }
        Action::Redirect(to) => {
            read_body(&mut r)?;
            respond(
                &mut out,
                307,
                "Temporary Redirect",
                &[("Location", to)],
                b"",
                head,
            )?;
            seen.status = 307;
        }
        Action::BasicChallenge => {
            read_body(&mut r)?;
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let challenge = ("WWW-Authenticate", r#"Basic realm="test""#.to_string());
            respond(
                &mut out,
                401,
                "Unauthorized",
                &[json, challenge],
                body.as_bytes(),
                head,
            )?;
            seen.status = 401;
        }
        Action::Challenge(repo) => {
            read_body(&mut r)?;
            let challenge = if no_scope {
                format!(r#"Bearer realm="http://{own}/token",service="test""#)
            } else {
                format!(
                    r#"Bearer realm="http://{own}/token",service="test",scope="repository:{repo}:pull,push""#
                )
            };
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            respond(
                &mut out,
                401,
                "Unauthorized",
                &[json, ("WWW-Authenticate", challenge)],
                body.as_bytes(),
                head,
            )?;
            seen.status = 401;
        }
        Action::Fault(f) => {
            seen.fault = Some(f);
            match f {
                Fault::Status500 => {
                    read_body(&mut r)?;
                    let body = r#"{"errors":[{"code":"UNKNOWN","message":"injected"}]}"#;
                    respond(
                        &mut out,
                        500,
                        "Internal Server Error",
                        &[json],
                        body.as_bytes(),
                        head,
                    )?;
                    seen.status = 500;
                }
                Fault::Html413 => {
                    read_body(&mut r)?;
                    let body = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
                                <body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n\
                                <hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
                    let html = ("Content-Type", "text/html".to_string());
                    respond(
                        &mut out,
                        413,
                        "Request Entity Too Large",
                        &[html],
                        body.as_bytes(),
                        head,
                    )?;
                    seen.status = 413;
                }
                Fault::Corrupt | Fault::Schema1 => {
                    let body = read_body(&mut r)?;
                    let up_head = upstream_head(&method, &target, &headers, upstream, body.len());
                    let (status, mut response) = forward(upstream, &location_to, &up_head, &body)?;
                    if f == Fault::Corrupt {
                        if let Some(last) = response.last_mut() {
                            *last ^= 1;
                        }
                    } else {
                        let text = String::from_utf8_lossy(&response).into_owned();
                        let schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
                        let changed: Vec<String> = text
                            .split("\r\n")
                            .map(|l| {
                                if l.to_ascii_lowercase().starts_with("content-type:") {
                                    format!("Content-Type: {schema1}")
                                } else {
                                    l.to_string()
                                }
                            })
                            .collect();
                        response = changed.join("\r\n").into_bytes();
                    }
                    out.write_all(&response)?;
                    out.flush()?;
                    seen.status = status;
                }
                Fault::Oversized => {
                    read_body(&mut r)?;
                    let body = vec![b' '; 5 << 20];
                    let oci = (
                        "Content-Type",
                        "application/vnd.oci.image.manifest.v1+json".to_string(),
                    );
                    let _ = respond(&mut out, 200, "OK", &[oci], &body, head);
                    seen.status = 200;
                }
                Fault::Drop { forward } => {
                    let mut part = vec![0; len / 2];
                    r.read_exact(&mut part)?;
                    if forward {
                        // The registry gets the head and half the body, then
                        // EOF; wait for it to finish with the request.
                        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
                        up.set_read_timeout(Some(Duration::from_secs(30)))?;
                        up.write_all(
                            upstream_head(&method, &target, &headers, upstream, len).as_bytes(),
                        )?;
                        up.write_all(&part)?;
                        up.shutdown(Shutdown::Write)?;
                        let _ = io::copy(&mut up, &mut io::sink());
                        seen.forwarded = part.len();
                    }
                    let _ = out.shutdown(Shutdown::Both);
                }
            }
        }
        Action::Forward { strip_query } => {
            let body = read_body(&mut r)?;
            let target = if strip_query {
                path.clone()
            } else {
                target.clone()
            };
            let up_head = upstream_head(&method, &target, &headers, upstream, body.len());
            let (status, response) = forward(upstream, &location_to, &up_head, &body)?;
            out.write_all(&response)?;
            out.flush()?;
            seen.forwarded = body.len();
            seen.status = status;
        }
    }
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .log
        .push(seen);
    Ok(())
}

/// Body bytes of the blob uploads the registry completed, by digest.
fn completed_uploads(log: &[Seen]) -> BTreeMap<String, usize> {
    let mut sessions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut done = BTreeMap::new();
    for s in log.iter().filter(|s| s.path.contains("/blobs/uploads/")) {
        match s.method.as_str() {
            "PATCH" if s.status == 202 => *sessions.entry(&s.path).or_default() += s.forwarded,
            "PUT" if s.status == 201 => {
                let digest = query_param(&s.query, "digest").expect("PUT carries ?digest=");
                let before = sessions.remove(s.path.as_str()).unwrap_or(0);
                let prev = done.insert(digest.clone(), before + s.forwarded);
                assert!(prev.is_none(), "{digest} was uploaded twice");
            }
            _ => {}
        }
    }
    done
}

pub(crate) fn describe(log: &[Seen]) -> String {
    let mut s = String::from("\nproxy log:\n");
    for e in log {
        s.push_str(&format!(
            "  {} {}{}{} → {}{}\n",
            e.method,
            e.path,
            if e.query.is_empty() { "" } else { "?…" },
            e.content_length
                .map(|l| format!(" ({l} bytes)"))
                .unwrap_or_default(),
            e.status,
            e.fault.map(|f| format!(" [{f:?}]")).unwrap_or_default()
        ));
    }
    s
}

// ------------------------------------------------------------ 1. archives

#[test]
fn distribution_archives_are_reproducible_and_podman_loads_them() {
    require("skopeo", "skopeo");
    let podman = Podman::get();
    let tmp = tempdir();
    let cwd = tmp.path().join("cwd");
    let scratch = tmp.path().join("tmp");
    fs::create_dir_all(&cwd).unwrap();
    fs::create_dir_all(&scratch).unwrap();
    let build = |oci: &str, docker: &str| -> String {
        let o = run(bareroot()
            .current_dir(&cwd)
            .env("TMPDIR", &scratch)
            .arg("build")
            .arg(recipe("shell.toml"))
            .args(["--oci-archive", oci, "--docker-archive", docker]));
        assert_success(&o, "bareroot build --oci-archive --docker-archive", "");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("wrote oci-archive {oci}"))
                && err.contains(&format!("wrote docker-archive {docker}")),
            "{err}"
        );
        last_line(&stdout(&o))
    };
    let digest = build("shell.oci.tar", "shell.docker.tar");
    let again = build("again/shell.oci.tar", "again/shell.docker.tar");
    assert_eq!(digest, again);
    let names: Vec<_> = fs::read_dir(&cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !cwd.join("out").exists(),
        "no --output: nothing but the archives in the current directory, found {names:?}"
    );
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "the temporary layout is removed from TMPDIR"
    );
    for f in ["shell.oci.tar", "shell.docker.tar"] {
        assert!(
            fs::read(cwd.join(f)).unwrap() == fs::read(cwd.join("again").join(f)).unwrap(),
            "{f} differs between two builds"
        );
    }

    // skopeo reads the oci-archive as the same image.
    let o = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!(
            "oci-archive:{}",
            cwd.join("shell.oci.tar").display()
        ))
        .stdin(Stdio::null()));
    assert_success(&o, "skopeo inspect oci-archive", "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str(), "{v}");

    // The docker-archive holds that image's config and layer, named by digest.
    let oci = tar_files(&cwd.join("shell.oci.tar"));
    let docker = tar_files(&cwd.join("shell.docker.tar"));
    let blob = |files: &BTreeMap<String, Vec<u8>>, d: &str| -> Vec<u8> {
        files[&format!("blobs/sha256/{}", &d[7..])].clone()
    };
    let manifest: Value = serde_json::from_slice(&blob(&oci, &digest)).unwrap();
    let listed: Value = serde_json::from_slice(&docker["manifest.json"]).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        listed[0]["Config"],
        format!("blobs/sha256/{}", &config[7..])
    );
    assert_eq!(
        listed[0]["Layers"],
        serde_json::json!([format!("blobs/sha256/{}", &layer[7..])])
    );
    assert_eq!(listed[0]["RepoTags"], serde_json::json!(["shell:latest"]));
    for (name, bytes) in docker.iter().filter(|(n, _)| n.starts_with("blobs/")) {
        assert_eq!(sha256(bytes)[7..], name["blobs/sha256/".len()..], "{name}");
    }

    // podman loads and runs it.
    struct Untag<'a>(&'a Podman);
    impl Drop for Untag<'_> {
        fn drop(&mut self) {
            let _ = run(self
                .0
                .cmd()
                .args(["rmi", "--force", "localhost/shell:latest"]));
        }
    }
    let _untag = Untag(podman);
    let o = run(podman
        .cmd()
        .arg("load")
        .arg("-i")
        .arg(cwd.join("shell.docker.tar"))
        .stdin(Stdio::null()));
    assert_success(&o, "podman load", "");
    assert!(
        stdout(&o).contains("localhost/shell:latest"),
        "podman load: {}",
        stdout(&o)
    );
    let o = run(podman
        .cmd()
        .args(["run", "--rm", "--network", "none", "shell:latest"])
        .stdin(Stdio::null()));
    assert_success(&o, "podman run shell:latest", "");
    assert_eq!(stdout(&o), SHELL_SAYS);
}

#[test]
fn distribution_docker_archive_takes_the_platform_asked_for() {
    require_multiarch_programs();
    let tmp = tempdir();
    let layout = tmp.path().join("layout");
    let archive = tmp.path().join("arm64.tar");
    let o = run(bareroot()
        .arg("build")
        .arg(recipe("multiarch.toml"))
        .arg("--output")
        .arg(&layout)
        .arg("--docker-archive")
        .arg(&archive)
        .args(["--platform", "linux/arm64"]));
    assert_success(
        &o,
        "bareroot build --docker-archive --platform linux/arm64",
        "",
    );
    assert!(
        stderr(&o).contains("(linux/arm64"),
        "stderr names the platform taken: {}",
        stderr(&o)
    );
    let digest = last_line(&stdout(&o));
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let top = read_json(&blob_path(&layout, &digest));
    let arm64 = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .unwrap_or_else(|| panic!("no arm64 image in {top}"));
    let manifest = read_json(&blob_path(&layout, arm64["digest"].as_str().unwrap()));
    let config = manifest["config"]["digest"].as_str().unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("blobs/sha256/{}", &l["digest"].as_str().unwrap()[7..]))
        .collect();

    let files = tar_files(&archive);
    let listed: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        listed[0]["Config"],
        format!("blobs/sha256/{}", &config[7..]),
        "the archive's config is the arm64 one: {listed}"
    );
    assert_eq!(listed[0]["Layers"], serde_json::json!(layers));
    assert_eq!(
        listed[0]["RepoTags"],
        serde_json::json!(["multiarch:latest"])
    );
    let cfg: Value =
        serde_json::from_slice(&files[&format!("blobs/sha256/{}", &config[7..])]).unwrap();
    assert_eq!(cfg["architecture"], "arm64");
}

// ---------------------------------------------------- 2. anonymous registry

#[test]
fn distribution_build_pushes_the_multiarch_index_under_two_tags() {
    require("skopeo", "skopeo");
    let built = multiarch();
    let reg = Registry::shared();
    let host = reg.host();
    let refs = [
        format!("{host}/team/multi:1.0"),
        format!("{host}/team/multi:latest"),
    ];
    let cwd = tempdir();
    let push = || {
        run(bareroot()
            .current_dir(cwd.path())
            .arg("build")
            .arg(recipe("multiarch.toml"))
            .arg("--push")
            .arg(&refs[0])
            .arg("--push")
            .arg(&refs[1]))
    };
    // The "done when": one command builds and pushes under both tags.
    let o = push();
    assert_success(&o, "bareroot build --push --push", &reg.log());
    let digest = last_line(&stdout(&o));
    assert_eq!(digest, built.digest, "the same recipe, the same image");
    let blobs = layout_blobs(&built.layout);
    assert_eq!(blobs.len(), 10, "5 configs and 5 layers");
    let total: u64 = blobs.values().sum();
    let expect = |uploaded, bytes, present| -> Vec<Pushed> {
        refs.iter()
            .map(|r| Pushed {
                reference: r.clone(),
                digest: digest.clone(),
                uploaded,
                bytes,
                present,
                mounted: 0,
            })
            .collect()
    };
    assert_eq!(parse_pushed(&stderr(&o)), expect(10, total, 0));
    assert_eq!(
        fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "a push-only build writes no layout to out/"
    );

    for r in &refs {
        let raw = assert_registry_has(r, &digest, &reg.log());
        let index: Value = serde_json::from_slice(&raw).unwrap();
        let platforms: BTreeSet<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let mut s = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(v) = p["variant"].as_str() {
                    s.push_str(&format!("/{v}"));
                }
                s
            })
            .collect();
        assert_eq!(
            platforms,
            PLATFORMS.iter().map(|(p, _)| p.to_string()).collect(),
            "{r}"
        );
    }
    let tmp = tempdir();
    assert_copies_back(&refs[0], &digest, &tmp.path().join("back"));

    // Again: everything is there already.
    let o = push();
    assert_success(&o, "bareroot build --push (again)", &reg.log());
    assert_eq!(parse_pushed(&stderr(&o)), expect(0, 0, 10));

    // podman pulls what bareroot pushed and runs it.
    let shell = shell();
    let reference = format!("{host}/team/shell:1");
    let o = run(bareroot().arg("push").arg(&shell.layout).arg(&reference));
    assert_success(&o, "bareroot push shell", &reg.log());
    assert_eq!(last_line(&stdout(&o)), shell.digest);
    let podman = Podman::get();
    struct Untag<'a>(&'a Podman, &'a str);
    impl Drop for Untag<'_> {
        fn drop(&mut self) {
            let _ = run(self.0.cmd().args(["rmi", "--force", self.1]));
        }
    }
    let _untag = Untag(podman, &reference);
    let o = run(podman
        .cmd()
        .args(["pull", "--tls-verify=false", &reference])
        .stdin(Stdio::null()));
    assert_success(&o, "podman pull", &reg.log());
    let o = run(podman
        .cmd()
        .args(["run", "--rm", "--network", "none", &reference])
        .stdin(Stdio::null()));
    assert_success(&o, "podman run", "");
    assert_eq!(stdout(&o), SHELL_SAYS);
}

// ------------------------------------------------------------ 3. basic auth

#[test]
fn distribution_push_with_basic_auth_takes_credentials_from_auth_files() {
    require("skopeo", "skopeo");
    let htpasswd = require("htpasswd", "apache2-utils");
    let shell = shell();
    let tmp = tempdir();
    let o = run(Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]));
    assert_success(&o, "htpasswd", "");
    let file = tmp.path().join("htpasswd");
    fs::write(&file, &o.stdout).unwrap();
    let reg = Registry::start(Some(&file));
    let host = reg.host();
    let home = tmp.path().join("home");
    let mut outputs = String::new();
    let mut push = |reference: &str, env: &[(&str, &Path)]| -> Output {
        let mut cmd = bareroot();
        isolate(&mut cmd, &home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = run(cmd.arg("push").arg(&shell.layout).arg(reference));
        outputs.push_str(&stdout(&o));
        outputs.push_str(&stderr(&o));
        o
    };

    // No credentials: one line naming the registry and how to log in.
    let o = push(&format!("{host}/team/app:1"), &[]);
    let err = assert_one_line_failure(&o, "a push without credentials");
    assert!(
        err.contains(&host) && err.contains("login"),
        "the message names the registry and how to log in: {err}"
    );
    let catalog = http_get(reg.port, "/v2/_catalog", Some(&basic(PASSWORD)));
    let (status, body) = catalog.expect("the registry answers");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!([]),
        "a refused push leaves nothing behind"
    );

    // A wrong password: refused, and the message names only the user.
    let wrong = tmp.path().join("wrong.json");
    fs::write(&wrong, auth_json(&host, "Wrong-pass-also-secret")).unwrap();
    let o = push(
        &format!("{host}/team/app:1"),
        &[("REGISTRY_AUTH_FILE", &wrong)],
    );
    let err = assert_one_line_failure(&o, "a push with a wrong password");
    assert!(!err.contains("Wrong-pass-also-secret"), "{err}");

    // REGISTRY_AUTH_FILE.
    let auth = tmp.path().join("auth.json");
    fs::write(&auth, auth_json(&host, PASSWORD)).unwrap();
    let o = push(
        &format!("{host}/team/app:1"),
        &[("REGISTRY_AUTH_FILE", &auth)],
    );
    assert_success(&o, "a push with REGISTRY_AUTH_FILE", &reg.log());
    // Docker's config.json in DOCKER_CONFIG.
    let docker = tmp.path().join("docker-config");
    fs::create_dir_all(&docker).unwrap();
    fs::write(docker.join("config.json"), auth_json(&host, PASSWORD)).unwrap();
    let o = push(&format!("{host}/team/app:2"), &[("DOCKER_CONFIG", &docker)]);
    assert_success(&o, "a push with DOCKER_CONFIG", &reg.log());

    // credHelpers: docker-credential-<name> get, the registry on stdin.
    let helpers = tmp.path().join("helpers");
    fs::create_dir_all(&helpers).unwrap();
    let script = helpers.join("docker-credential-bareroottest");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$host\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helper_config = tmp.path().join("helper-config");
    fs::create_dir_all(&helper_config).unwrap();
    fs::write(
        helper_config.join("config.json"),
        format!("{{\"credHelpers\":{{\"{host}\":\"bareroottest\"}}}}"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helpers.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = push(
        &format!("{host}/team/app:3"),
        &[
            ("DOCKER_CONFIG", &helper_config),
            ("PATH", Path::new(&path)),
        ],
    );
    assert_success(&o, "a push with a credential helper", &reg.log());

    let creds = format!("--creds={USER}:{PASSWORD}");
    for tag in ["1", "2", "3"] {
        let o = skopeo_inspect_raw(&format!("{host}/team/app:{tag}"), &[&creds]);
        assert_success(&o, "skopeo inspect", &reg.log());
        assert_eq!(sha256(&o.stdout), shell.digest);
    }
    let b64 = basic(PASSWORD);
    assert!(
        !outputs.contains(PASSWORD) && !outputs.contains(&b64[6..]),
        "bareroot printed the password:\n{outputs}"
    );
}

// -------------------------------------------- 4. token auth, injected faults

#[test]
fn distribution_push_through_token_auth_survives_expiry_errors_and_drops() {
    require("skopeo", "skopeo");
    let built = multiarch();
    let reg = Registry::shared();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let tmp = tempdir();
    let home = tmp.path().join("home");
    let blobs = layout_blobs(&built.layout);
    let total: u64 = blobs.values().sum();
    let mut outputs = String::new();
    let mut push = |auth_file: &Path, refs: &[String]| -> Output {
        let mut cmd = bareroot();
        isolate(&mut cmd, &home);
        let o = run(cmd
            .env("REGISTRY_AUTH_FILE", auth_file)
            .arg("push")
            .arg(&built.layout)
            .args(refs));
        outputs.push_str(&stdout(&o));
        outputs.push_str(&stderr(&o));
        o
    };
    proxy.with(|s| {
        s.bearer = true;
        s.token_uses = Some(7);
        s.token_basic = Some(basic(PASSWORD));
        s.refuse_mounts = true;
    });

    // The token service refuses a wrong password: one line, no secret.
    let wrong = tmp.path().join("wrong.json");
    fs::write(&wrong, auth_json(&host, "Wrong-pass-also-secret")).unwrap();
    let refs = [
        format!("{host}/team/auth-a:1"),
        format!("{host}/team/auth-b:1"),
    ];
    let o = push(&wrong, &refs);
    let err = assert_one_line_failure(&o, "a push the token service refuses");
    assert!(
        err.contains("401") && err.contains("token") && !err.contains("Wrong-pass"),
        "{err}"
    );
    assert!(proxy.with(|s| s.tokens.is_empty()));
    proxy.take_log();

    // The right password, and faults: a 500 for the first manifest PUT,
    // a connection dropped halfway through the first big blob PUT, tokens
    // that expire after 7 requests, and mounts refused.
    proxy.with(|s| {
        s.triggers = vec![
            Trigger::new("PUT", "/manifests/", Fault::Status500),
            Trigger {
                min_len: 1 << 20,
                ..Trigger::new("PUT", "/blobs/uploads/", Fault::Drop { forward: false })
            },
        ];
    });
    let auth = tmp.path().join("auth.json");
    fs::write(&auth, auth_json(&host, PASSWORD)).unwrap();
    let o = push(&auth, &refs);
    let log = proxy.take_log();
    assert_success(&o, "a push through faults", &(describe(&log) + &reg.log()));
    assert_eq!(last_line(&stdout(&o)), built.digest);
    let pushed = parse_pushed(&stderr(&o));
    let want = |r: &str| Pushed {
        reference: r.to_string(),
        digest: built.digest.clone(),
        uploaded: 10,
        bytes: total,
        present: 0,
        mounted: 0,
    };
    assert_eq!(
        pushed,
        vec![want(&refs[0]), want(&refs[1])],
        "auth-b's mounts were refused, so it uploads everything"
    );

    let (fired, expired, tokens) = proxy.with(|s| {
        (
            s.triggers.iter().all(|t| t.fired),
            s.expired,
            s.tokens.clone(),
        )
    });
    let diag = describe(&log);
    assert!(fired, "every fault was injected{diag}");
    assert!(
        expired >= 1 && tokens.len() >= 2,
        "tokens expired ({expired} refusals) and were renewed ({} issued){diag}",
        tokens.len()
    );
    for s in &log {
        if s.path == "/token" {
            assert_eq!(s.authorization.as_deref(), Some(basic(PASSWORD).as_str()));
            assert_eq!(query_param(&s.query, "service").as_deref(), Some("test"));
            let scope = query_param(&s.query, "scope").unwrap_or_default();
            assert!(
                scope == "repository:team/auth-a:pull,push"
                    || scope == "repository:team/auth-b:pull,push",
                "the challenge's scope is asked for: {scope}"
            );
        } else {
            assert!(
                s.authorization
                    .as_deref()
                    .is_none_or(|a| a.starts_with("Bearer ")),
                "only the token service gets the password: {} {}",
                s.method,
                s.path
            );
            assert!(
                !s.chunked || s.forwarded == 0,
                "bodies go with a Content-Length: {} {}",
                s.method,
                s.path
            );
        }
    }
    let mounts: Vec<&Seen> = log
        .iter()
        .filter(|s| s.method == "POST" && s.query.contains("mount="))
        .collect();
    let refused: BTreeSet<&str> = mounts
        .iter()
        .filter(|s| s.status == 202)
        .filter_map(|s| s.query.split('&').find(|kv| kv.starts_with("mount=")))
        .collect();
    assert!(
        refused.len() == 10
            && mounts.iter().all(|s| s.status == 202 || s.status == 401)
            && mounts
                .iter()
                .all(|s| s.path.contains("/team/auth-b/") && s.query.contains("from=team/auth-a")),
        "auth-b asks to mount every blob from auth-a (and is refused){diag}"
    );
    // Each blob reached each repository once, whole.
    for repo in ["auth-a", "auth-b"] {
        let part: Vec<Seen> = log
            .iter()
            .filter(|s| s.path.contains(&format!("/team/{repo}/")))
            .cloned()
            .collect();
        let done = completed_uploads(&part);
        let sizes: BTreeMap<String, usize> = blobs
            .iter()
            .map(|(d, n)| (d.clone(), *n as usize))
            .collect();
        assert_eq!(done, sizes, "{repo}'s uploads{diag}");
    }
    for r in &refs {
        let direct = r.replace(&host, &reg.host());
        assert_registry_has(&direct, &built.digest, &reg.log());
    }
    assert!(
        !outputs.contains("tok-") && !outputs.contains(PASSWORD),
        "bareroot printed a token or the password:\n{outputs}"
    );
}

#[test]
fn distribution_push_reports_an_html_413_and_a_rerun_sends_only_missing_blobs() {
    require("skopeo", "skopeo");
    let built = multiarch();
    let reg = Registry::shared();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let blobs = layout_blobs(&built.layout);
    let reference = format!("{host}/team/interrupted:1");
    let copy = format!("{host}/team/interrupted-copy:1");
    let push = |refs: &[&String]| run(bareroot().arg("push").arg(&built.layout).args(refs));

    // The first blob POST answers an HTML 413: one line, no tags.
    proxy.with(|s| s.triggers = vec![Trigger::new("POST", "/blobs/uploads/", Fault::Html413)]);
    let o = push(&[&reference]);
    let log = proxy.take_log();
    let err = assert_one_line_failure(&o, "a push answered 413");
    assert!(
        err.contains("413")
            && err.contains("Request Entity Too Large")
            && err.contains("team/interrupted")
            && !err.contains('<')
            && !err.contains('>'),
        "the 413 and its text without HTML: {err}"
    );
    assert!(
        completed_uploads(&log).is_empty(),
        "nothing uploaded{}",
        describe(&log)
    );

    // Interrupted at the fourth blob: three are on the registry.
    proxy.with(|s| {
        s.triggers = vec![Trigger {
            skip: 3,
            ..Trigger::new("POST", "/blobs/uploads/", Fault::Html413)
        }]
    });
    let o = push(&[&reference]);
    let log = proxy.take_log();
    assert_one_line_failure(&o, "a push interrupted by a 413");
    let first: BTreeSet<String> = completed_uploads(&log).into_keys().collect();
    assert_eq!(first.len(), 3, "{}", describe(&log));

    // Run again, to a second repository too: only the seven missing blobs
    // are sent; the second repository mounts them all.
    let o = push(&[&reference, &copy]);
    let log = proxy.take_log();
    let diag = describe(&log) + &reg.log();
    assert_success(&o, "the re-run", &diag);
    let missing: BTreeMap<String, usize> = blobs
        .iter()
        .filter(|(d, _)| !first.contains(*d))
        .map(|(d, n)| (d.clone(), *n as usize))
        .collect();
    let main: Vec<Seen> = log
        .iter()
        .filter(|s| s.path.contains("/team/interrupted/"))
        .cloned()
        .collect();
    assert_eq!(completed_uploads(&main), missing, "{diag}");
    let bytes: u64 = missing.values().map(|n| *n as u64).sum();
    let pushed = parse_pushed(&stderr(&o));
    assert_eq!(
        pushed,
        vec![
            Pushed {
                reference: reference.clone(),
                digest: built.digest.clone(),
                uploaded: 7,
                bytes,
                present: 3,
                mounted: 0,
            },
            Pushed {
                reference: copy.clone(),
                digest: built.digest.clone(),
                uploaded: 0,
                bytes: 0,
                present: 0,
                mounted: 10,
            },
        ]
    );
    assert!(
        completed_uploads(&log).len() == 7,
        "mounts send no bytes{diag}"
    );
    for r in [&reference, &copy] {
        assert_registry_has(&r.replace(&host, &reg.host()), &built.digest, &reg.log());
    }
}

#[test]
fn distribution_push_recovers_when_half_an_upload_reached_the_registry() {
    require("skopeo", "skopeo");
    let built = shell();
    let reg = Registry::shared();
    let proxy = Proxy::start(reg.port);
    let reference = format!("{}/team/half:1", proxy.host());
    // The connection drops after half the layer reached the registry, which
    // then holds a broken upload session.
    proxy.with(|s| {
        s.triggers = vec![Trigger {
            min_len: 1 << 20,
            ..Trigger::new("PUT", "/blobs/uploads/", Fault::Drop { forward: true })
        }]
    });
    let o = run(bareroot().arg("push").arg(&built.layout).arg(&reference));
    let log = proxy.take_log();
    assert!(proxy.with(|s| s.triggers[0].fired), "{}", describe(&log));
    assert_success(
        &o,
        "a push whose upload broke off halfway",
        &(describe(&log) + &reg.log()),
    );
    let (layer, size) = layout_blobs(&built.layout)
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .unwrap();
    assert_eq!(
        completed_uploads(&log).get(&layer),
        Some(&(size as usize)),
        "the layer went up whole in a new session{}",
        describe(&log)
    );
    assert_registry_has(
        &reference.replace(&proxy.host(), &reg.host()),
        &built.digest,
        &reg.log(),
    );
}

// ------------------------------------------------------- 5. chunked upload

#[test]
fn distribution_push_in_chunks() {
    require("skopeo", "skopeo");
    let built = shell();
    let reg = Registry::shared();
    // A proxy that only watches.
    let proxy = Proxy::start(reg.port);
    let chunk = 65536usize;
    let o = run(bareroot()
        .arg("push")
        .arg(&built.layout)
        .arg(format!("{}/team/chunked:1", proxy.host()))
        .args(["--chunk-size", &chunk.to_string()]));
    let log = proxy.take_log();
    let diag = describe(&log) + &reg.log();
    assert_success(&o, "bareroot push --chunk-size 65536", &diag);
    let blobs = layout_blobs(&built.layout);
    let (layer, size) = blobs
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(d, n)| (d.clone(), *n as usize))
        .unwrap();
    assert!(size > 4 * chunk, "the layer is big enough to chunk");

    // The PATCHes cover the layer in order, each with its Content-Length
    // and Content-Range, and a PUT with no body completes it.
    let patches: Vec<&Seen> = log.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), size.div_ceil(chunk), "{diag}");
    let mut offset = 0;
    for p in &patches {
        let len = chunk.min(size - offset);
        assert_eq!(p.content_length, Some(len), "{diag}");
        assert_eq!(
            p.content_range.as_deref(),
            Some(format!("{}-{}", offset, offset + len - 1).as_str()),
            "{diag}"
        );
        assert_eq!(p.status, 202);
        offset += len;
    }
    let done = completed_uploads(&log);
    assert_eq!(done.get(&layer), Some(&size), "{diag}");
    let finish = log
        .iter()
        .find(|s| s.method == "PUT" && s.query.contains(&layer[7..]))
        .expect("a PUT completes the layer");
    assert_eq!(finish.forwarded, 0, "the completing PUT carries no bytes");

    let pushed = parse_pushed(&stderr(&o));
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (pushed[0].uploaded, pushed[0].bytes),
        (2, blobs.values().sum())
    );

    let tmp = tempdir();
    let back = tmp.path().join("back");
    assert_copies_back(
        &format!("{}/team/chunked:1", reg.host()),
        &built.digest,
        &back,
    );
    let bytes = fs::read(blob_path(&back, &layer)).unwrap();
    assert_eq!(sha256(&bytes), layer, "the layer came back whole");
}

// ------------------------------------------------------------- 6. errors

#[test]
fn distribution_push_errors_are_one_line() {
    let built = shell();
    let o = run(bareroot()
        .arg("push")
        .arg(&built.layout)
        .arg("127.0.0.1:5000/Team/App:1"));
    let err = assert_one_line_failure(&o, "a push to an upper-case repository");
    assert!(
        err.contains("parse image reference") && err.contains("127.0.0.1:5000/Team/App:1"),
        "{err}"
    );

    // A bad --push fails before the build: no layout appears.
    let tmp = tempdir();
    let o = run(bareroot()
        .current_dir(tmp.path())
        .arg("build")
        .arg(recipe("shell.toml"))
        .args(["--push", "127.0.0.1:5000/Team/App:1"]));
    assert_one_line_failure(&o, "a build with a bad --push");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);

    // Nothing listens: retried, then one clear line.
    let port = free_port();
    let started = Instant::now();
    let o = run(bareroot()
        .arg("push")
        .arg(&built.layout)
        .arg(format!("127.0.0.1:{port}/team/app:1")));
    let took = started.elapsed();
    let err = assert_one_line_failure(&o, "a push to a closed port");
    assert!(
        err.contains(&format!("127.0.0.1:{port}"))
            && err.to_lowercase().contains("connection refused")
            && err.contains("attempts"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(1),
        "a refused connection is retried with backoff (took {took:?})"
    );
}

// ------------------------------------------------------ 7. attached SBOMs

#[test]
fn distribution_attached_sbom_travels_as_a_referrer() {
    require("skopeo", "skopeo");
    let reg = Registry::shared();
    let host = reg.host();
    let tmp = tempdir();
    let layout = tmp.path().join("shell");
    let o = run(bareroot()
        .arg("build")
        .arg(recipe("shell.toml"))
        .arg("--output")
        .arg(&layout)
        .arg("--attach-sbom")
        .arg("--push")
        .arg(format!("{host}/team/sbom:1")));
    assert_success(&o, "build --attach-sbom --push", &reg.log());
    let digest = support::last_line(&stdout(&o));

    // The layout: the image, tagged, then the SBOM artifact about it.
    let index = read_json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    assert_eq!(manifests[0]["digest"], digest.as_str());
    assert_eq!(manifests[1]["artifactType"], "application/spdx+json");
    let artifact = read_json(&blob_path(
        &layout,
        manifests[1]["digest"].as_str().unwrap(),
    ));
    assert_eq!(artifact["subject"]["digest"], digest.as_str());
    let sbom_blob = artifact["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let sbom: Value =
        serde_json::from_slice(&fs::read(blob_path(&layout, &sbom_blob)).unwrap()).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    // Tools that read the layout by tag still find the image.
    let o = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:latest", layout.display())));
    assert_success(&o, "skopeo inspect of a layout with a referrer", "");

    // The registry: the referrers tag schema points at the artifact.
    let tag = format!("{host}/team/sbom:sha256-{}", &digest[7..]);
    let o = skopeo_inspect_raw(&tag, &[]);
    assert_success(&o, "skopeo inspect the referrers tag", &reg.log());
    let referrers: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(referrers["manifests"][0]["digest"], manifests[1]["digest"]);
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let (status, body) = http_get(reg.port, &format!("/v2/team/sbom/blobs/{sbom_blob}"), None)
        .expect("the registry answers");
    assert_eq!(status, 200);
    assert_eq!(
        sha256(body.as_bytes()),
        sbom_blob,
        "the SBOM blob arrived intact"
    );
}

// ------------------------------ 8. credentials stay on the registry's host

/// Regression: the registry's credentials went with the PUT to whatever
/// host the upload's `Location` named. Here the registry, behind a proxy on
/// 127.0.0.1 that demands basic credentials (then, second round, a token),
/// names upload locations on 127.0.0.2, a second proxy in front of the same
/// registry: the push completes, and 127.0.0.2 never sees an
/// `Authorization` header.
#[test]
fn distribution_push_sends_no_credentials_to_an_upload_location_elsewhere() {
    let built = shell();
    let reg = Registry::shared();
    let elsewhere = Proxy::start_on([127, 0, 0, 2], reg.port);
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    proxy.with(|s| {
        s.location_to = Some(elsewhere.host());
        s.basic = Some(basic(PASSWORD));
    });
    let tmp = tempdir();
    let auth = tmp.path().join("auth.json");
    fs::write(&auth, auth_json(&host, PASSWORD)).unwrap();
    for round in ["basic", "bearer"] {
        if round == "bearer" {
            proxy.with(|s| {
                s.basic = None;
                s.bearer = true;
                s.token_basic = Some(basic(PASSWORD));
            });
        }
        let mut cmd = bareroot();
        isolate(&mut cmd, &tmp.path().join("home"));
        let o = run(cmd
            .env("REGISTRY_AUTH_FILE", &auth)
            .arg("push")
            .arg(&built.layout)
            .arg(format!("{host}/leak/{round}:1")));
        let here = proxy.take_log();
        let there = elsewhere.take_log();
        let logs = format!("{}{}", describe(&here), describe(&there));
        assert_success(&o, &format!("the {round} push"), &logs);
        assert!(
            here.iter().any(|s| s.authorization.is_some()),
            "the registry's own host got the credentials{logs}"
        );
        assert!(
            there.iter().any(|s| s.method == "PUT" && s.status == 201),
            "the uploads went to {}{logs}",
            elsewhere.host()
        );
        for s in &there {
            assert_eq!(
                s.authorization,
                None,
                "{round}: {} {} at {} carried credentials{logs}",
                s.method,
                s.path,
                elsewhere.host()
            );
        }
    }
}
