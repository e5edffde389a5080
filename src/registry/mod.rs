//! The registry client push and pull share, per the OCI distribution spec:
//! references (`registry/repository[:tag][@digest]`), the transport, auth
//! and retries. `push` sends a built layout; `pull` fetches an image into a
//! content-addressed store.
//!
//! Auth: anonymous, HTTP basic, and the token flow of a `Bearer` challenge
//! (scope `pull` for a pull, `pull,push` for a push), with credentials from
//! the containers auth file or Docker's config (`auths`, `credHelpers`,
//! `credsStore`). A token that expires mid-transfer is renewed. Tokens and
//! passwords never appear in messages, and they go only to the registry's
//! own scheme, host and port (the token request's only to its realm):
//! redirects are followed here, hop by hop, never by the HTTP client, so a
//! blob redirected to a storage host or an upload Location elsewhere gets no
//! credentials.
//!
//! Transport: TLS (rustls, the platform's roots) by default; plain HTTP only
//! for loopback registries or with `--insecure-registry HOST`. Connection
//! errors, 408, 429 and 5xx are retried with backoff, existence checks too.

pub mod pull;
pub mod push;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub use pull::{parse_manifest, pull, Fetched};
pub use push::{push, PushReport, CHUNK_SIZE};

/// How many times one request is tried before it fails.
const ATTEMPTS: u32 = 5;

/// How many redirects one request follows.
const MAX_REDIRECTS: usize = 5;

/// `registry/repository[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// "host[:port]".
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        let bad = |m: &str| Error::msg(format!("parse image reference {s:?}: {m}"));
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => match Digest::parse(d) {
                Ok(d) => (r, Some(d)),
                Err(_) => return Err(bad("the digest must be sha256:<64 hex digits>")),
            },
            None => (s, None),
        };
        if rest.is_empty() {
            return Err(bad(
                "expected [REGISTRY/]REPOSITORY[:TAG], e.g. 127.0.0.1:5000/team/app:1.0",
            ));
        }
        let (first, path) = rest.split_once('/').unwrap_or(("", rest));
        let is_host = first.contains('.') || first.contains(':') || first == "localhost";
        let (registry, path) = if is_host {
            (first.to_string(), path.to_string())
        } else {
            ("docker.io".to_string(), rest.to_string())
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
            _ => (path, None),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "the repository must be lowercase letters, digits and . _ - separated by /",
            ));
        }
        if let Some(t) = &tag {
            let b = t.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 128
                && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
            if !ok {
                return Err(bad("the tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Ok(Reference {
                registry,
                repository,
                tag: Some("latest".into()),
                digest,
            });
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// How to reach registries, for a push or a pull.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Registries ("host[:port]") that may be spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// No progress bars.
    pub quiet: bool,
    /// Push only: blobs larger than this go up in chunks of this size; 0
    /// means [`CHUNK_SIZE`].
    pub chunk_size: u64,
}

/// The name `app` builds push options by.
pub type PushOptions = Options;

/// What to send with a request; re-creatable for retries.
#[derive(Clone)]
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

/// An HTTP exchange's outcome: status, headers we need, and a short body.
struct Reply {
    status: u16,
    /// The URL that answered (after redirects): relative Locations resolve
    /// against it.
    url: String,
    location: Option<String>,
    digest: Option<String>,
    www_authenticate: Option<String>,
    chunk_min: Option<u64>,
    /// The registry answered with OCI-Subject (it tracks referrers).
    oci_subject: bool,
    content_type: Option<String>,
    content_length: Option<u64>,
    body: String,
}

enum Auth {
    None,
    Basic(String),
    Bearer(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

struct Client<'o> {
    agent: ureq::Agent,
    base: String,
    /// The registry's scheme, host and port: the only place its
    /// credentials and tokens are sent.
    origin: Origin,
    registry: String,
    repository: String,
    credentials: Option<(String, String)>,
    auth: Auth,
    opts: &'o Options,
    /// The actions a token is asked for when the challenge names none.
    scope: Scope,
    bar: Option<ProgressBar>,
}

impl<'o> Client<'o> {
    fn new(
        registry: &str,
        repository: &str,
        opts: &'o Options,
        scope: Scope,
    ) -> Result<Client<'o>> {
        let plain = is_loopback(registry) || opts.insecure.iter().any(|h| h == registry);
        let scheme = if plain { "http" } else { "https" };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Redirects are followed by `exchange`, which decides per hop
            // whether credentials may go along.
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(concat!("bareroot/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        // Docker Hub's API is not on the name its images go by.
        let host = match registry {
            "docker.io" => "registry-1.docker.io",
            other => other,
        };
        let base = format!("{scheme}://{host}");
        let origin = Origin::of(&base)
            .ok_or_else(|| Error::msg(format!("parse registry address {registry:?}")))?;
        Ok(Client {
            agent,
            base,
            origin,
            registry: registry.to_string(),
            repository: repository.to_string(),
            credentials: credentials(registry)?,
            auth: Auth::None,
            opts,
            scope,
            bar: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Reply> {
        let (mut reply, mut response) = self.open(method, url, headers, body)?;
        reply.body = short_body(method, &mut response);
        Ok(reply)
    }

    /// [`Client::request`] with the response's body left unread (for a
    /// blob to stream); `Reply::body` is empty.
    fn open(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<(Reply, ureq::http::Response<ureq::Body>)> {
        let mut attempt = 0;
        let mut auth_rounds = 0;
        loop {
            attempt += 1;
            match self.send(method, url, headers, body.clone()) {
                // A 401 from another host (a redirect's target) is not the
                // registry asking for its credentials.
                Ok((r, mut response))
                    if r.status == 401 && auth_rounds < 2 && self.is_registry(&r.url) =>
                {
                    auth_rounds += 1;
                    let text = short_body(method, &mut response);
                    self.authenticate(r.www_authenticate.as_deref(), &text)?;
                }
                Ok((r, _)) if retryable_status(r.status) && attempt < ATTEMPTS => backoff(attempt),
                Ok(r) => return Ok(r),
                Err(_) if attempt < ATTEMPTS => backoff(attempt),
                Err(e) => {
                    return Err(Error::msg(format!(
                        "{method} {}: {e} (after {ATTEMPTS} attempts)",
                        redact(url)
                    )))
                }
            }
        }
    }

    /// Whether `url` is on the registry's own scheme, host and port.
    fn is_registry(&self, url: &str) -> bool {
        Origin::of(url).as_ref() == Some(&self.origin)
    }

    fn authorization(&self) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic(b) => Some(format!("Basic {b}")),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> std::result::Result<(Reply, ureq::http::Response<ureq::Body>), String> {
        let authorization = self.authorization();
        let credentials = authorization.as_deref().map(|a| (&self.origin, a));
        let (url, response) = self.exchange(method, url, headers, body, credentials)?;
        let h = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let reply = Reply {
            status: response.status().as_u16(),
            location: h("Location"),
            digest: h("Docker-Content-Digest"),
            www_authenticate: h("WWW-Authenticate"),
            chunk_min: h("OCI-Chunk-Min-Length").and_then(|v| v.parse().ok()),
            oci_subject: h("OCI-Subject").is_some(),
            content_type: h("Content-Type"),
            content_length: h("Content-Length").and_then(|v| v.parse().ok()),
            url,
            body: String::new(),
        };
        Ok((reply, response))
    }

    /// One request, following redirects by hand (at most
    /// [`MAX_REDIRECTS`]): relative Locations resolve against the URL that
    /// answered, https never leads to http, and `authorization` goes only to
    /// hops on its origin, never to a storage host or anywhere else a
    /// Location names. Returns the URL that answered and its response.
    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
        authorization: Option<(&Origin, &str)>,
    ) -> std::result::Result<(String, ureq::http::Response<ureq::Body>), String> {
        let mut method = method.to_string();
        let mut url = url.to_string();
        let mut body = body;
        let mut headers = headers.to_vec();
        let mut hops = 0;
        loop {
            let auth = authorization
                .filter(|(o, _)| Origin::of(&url).as_ref() == Some(*o))
                .map(|(_, a)| a);
            let response = self.send_once(&method, &url, &headers, body.clone(), auth)?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("Location")
                .and_then(|v| v.to_str().ok());
            let Some(location) = location.filter(|_| is_redirect(status)) else {
                return Ok((url, response));
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let next = resolve(&url, location)
                .ok_or_else(|| format!("redirected to an unusable location {location:?}"))?;
            let scheme = |u: &str| Origin::of(u).map(|o| o.scheme);
            if scheme(&url).as_deref() == Some("https") && scheme(&next).as_deref() != Some("https")
            {
                return Err(format!(
                    "refused a redirect from https to {}",
                    redact(&next)
                ));
            }
            // 301, 302 and 303 after anything but GET or HEAD turn the
            // request into a GET without a body (as browsers and curl do).
            if (301..=303).contains(&status) && !matches!(method.as_str(), "GET" | "HEAD") {
                method = "GET".into();
                body = Body::Empty;
                headers.clear();
            }
            url = next;
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
        authorization: Option<&str>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, String> {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        let response = match body {
            Body::Empty => {
                let req = req.body(()).map_err(|e| e.to_string())?;
                self.agent.run(req)
            }
            Body::Bytes(b) => {
                let req = req
                    .header("Content-Length", b.len().to_string())
                    .body(b.to_vec())
                    .map_err(|e| e.to_string())?;
                self.agent.run(req)
            }
            Body::File { path, offset, len } => {
                let mut f =
                    File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
                f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
                let reader = Counting {
                    inner: f.take(len),
                    bar: self.bar.clone(),
                };
                let req = req
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_owned_reader(reader))
                    .map_err(|e| e.to_string())?;
                self.agent.run(req)
            }
        };
        response.map_err(|e| e.to_string())
    }

    /// Answer a 401: basic credentials, or a token from the challenge's realm.
    fn authenticate(&mut self, header: Option<&str>, body: &str) -> Result<()> {
        let who = format!("authenticate to {}", self.registry);
        let Some(header) = header else {
            return Err(Error::msg(format!(
                "{who}: 401 without a WWW-Authenticate challenge{}",
                summary(body)
            )));
        };
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let Some((user, pass)) = &self.credentials else {
                    return Err(Error::msg(format!(
                        "{who}: the registry wants a user name and password; none found in the \
                         containers auth file or Docker config (try `podman login {}`)",
                        self.registry
                    )));
                };
                if matches!(self.auth, Auth::Basic(_)) {
                    return Err(Error::msg(format!(
                        "{who}: the registry refused the credentials for {user}"
                    )));
                }
                self.auth = Auth::Basic(
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")),
                );
                Ok(())
            }
            "bearer" => {
                let challenge = parse_challenge(params)
                    .ok_or_else(|| Error::msg(format!("{who}: malformed Bearer challenge")))?;
                let token = self.fetch_token(&challenge)?;
                self.auth = Auth::Bearer(token);
                Ok(())
            }
            other => Err(Error::msg(format!(
                "{who}: unsupported auth scheme {other}"
            ))),
        }
    }

    fn fetch_token(&self, c: &Challenge) -> Result<String> {
        let who = format!("get a token for {} from {}", self.registry, c.realm);
        let scope = c
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:{}", self.repository, self.scope.actions()));
        let mut url = c.realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = &c.service {
            url.push_str(&format!("{sep}service={}", encode(s)));
            sep = '&';
        }
        url.push_str(&format!("{sep}scope={}", encode(&scope)));
        let mut last = String::new();
        let realm = Origin::of(&url)
            .ok_or_else(|| Error::msg(format!("{who}: the realm is not an http(s) URL")))?;
        if self.origin.scheme == "https" && realm.scheme != "https" && self.credentials.is_some() {
            return Err(Error::msg(format!(
                "{who}: refusing to send credentials to a plain-http realm"
            )));
        }
        let basic = self.credentials.as_ref().map(|(u, p)| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {b}")
        });
        for attempt in 1..=ATTEMPTS {
            let credentials = basic.as_deref().map(|b| (&realm, b));
            match self.exchange("GET", &url, &[], Body::Empty, credentials) {
                Ok((_, mut r)) => {
                    let status = r.status().as_u16();
                    let mut buf = Vec::new();
                    let _ = r.body_mut().as_reader().take(1 << 20).read_to_end(&mut buf);
                    if status == 200 {
                        #[derive(Deserialize)]
                        struct TokenReply {
                            token: Option<String>,
                            access_token: Option<String>,
                        }
                        let t: TokenReply = serde_json::from_slice(&buf)
                            .map_err(|_| Error::msg(format!("{who}: the reply is not a token")))?;
                        return t
                            .token
                            .or(t.access_token)
                            .filter(|t| !t.is_empty())
                            .ok_or_else(|| Error::msg(format!("{who}: the reply holds no token")));
                    }
                    if !retryable_status(status) {
                        return Err(self.status_error(
                            &who,
                            status,
                            &String::from_utf8_lossy(&buf),
                        ));
                    }
                    last = format!("status {status}");
                }
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                backoff(attempt);
            }
        }
        Err(Error::msg(format!(
            "{who}: {last} (after {ATTEMPTS} attempts)"
        )))
    }

    fn status_error(&self, what: &str, status: u16, body: &str) -> Error {
        Error::msg(format!(
            "{what}: registry answered {status}{}",
            summary(body)
        ))
    }

    /// A request on an upload session failed: a session the registry no
    /// longer knows or will not continue (404, 416: e.g. after a broken-off
    /// body) is started over.
    fn start_bar(&mut self, digest: &Digest, size: u64) {
        if self.opts.quiet || !std::io::stdout().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{} {}", &digest.hex()[..12], self.repository));
        self.bar = Some(bar);
    }
}

struct Counting<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}

/// What a client will do in a repository: what its tokens are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Pull,
    Push,
}

impl Scope {
    fn actions(self) -> &'static str {
        match self {
            Scope::Pull => "pull",
            Scope::Push => "pull,push",
        }
    }
}

/// Up to 64 KiB of a response's body, as text (an error's explanation).
fn short_body(method: &str, response: &mut ureq::http::Response<ureq::Body>) -> String {
    if method == "HEAD" {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = response
        .body_mut()
        .as_reader()
        .take(64 << 10)
        .read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn is_redirect(s: u16) -> bool {
    matches!(s, 301 | 302 | 303 | 307 | 308)
}

/// A URL's scheme, host and port, as the HTTP client will connect to them:
/// what decides whether credentials may go along.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &str) -> Option<Origin> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        Some(Origin {
            host: uri.host()?.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(default),
            scheme,
        })
    }
}

/// `location` (absolute, scheme-relative, absolute-path, query or relative)
/// resolved against `base`, the URL that answered with it.
fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let has_scheme = location.split_once("://").is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    let url = if has_scheme {
        location.to_string()
    } else {
        let uri: ureq::http::Uri = base.parse().ok()?;
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?.as_str();
        if let Some(rest) = location.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{scheme}://{authority}{location}")
        } else if location.starts_with('?') {
            format!("{scheme}://{authority}{}{location}", uri.path())
        } else {
            let path = uri.path();
            let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
            format!("{scheme}://{authority}{dir}{location}")
        }
    };
    Origin::of(&url).map(|_| url)
}

fn retryable_status(s: u16) -> bool {
    s == 408 || s == 429 || (500..600).contains(&s)
}

fn backoff(attempt: u32) {
    let ms = (100u64 << attempt.min(6)).min(5_000);
    std::thread::sleep(Duration::from_millis(ms));
}

fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.is_loopback())
            .unwrap_or(false)
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", encode(value))
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL without its query (upload locations can carry state tokens).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// `realm="...",service="...",scope="..."`.
fn parse_challenge(params: &str) -> Option<Challenge> {
    let mut map = BTreeMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        map.insert(key, value.to_string());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        realm: map.remove("realm")?,
        service: map.remove("service"),
        scope: map.remove("scope"),
    })
}

/// A registry error body in one short line: the OCI error list when it is
/// JSON, else the text without HTML tags.
fn summary(body: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    if body.trim().is_empty() {
        return String::new();
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| {
                format!(
                    "{}{}",
                    i.code
                        .as_deref()
                        .map(|c| format!("{c}: "))
                        .unwrap_or_default(),
                    i.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        if !parts.is_empty() {
            return format!(" ({})", parts.join("; "));
        }
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(if c.is_control() { ' ' } else { c }),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut line = words.join(" ");
    if line.chars().count() > 200 {
        line = line.chars().take(200).collect::<String>() + "…";
    }
    if line.is_empty() {
        String::new()
    } else {
        format!(" ({line})")
    }
}

// ------------------------------------------------------------ credentials

/// The user name and password for `registry`, from (in order)
/// `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn credentials(registry: &str) -> Result<Option<(String, String)>> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => files.push(PathBuf::from(d).join("config.json")),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                files.push(PathBuf::from(h).join(".docker/config.json"));
            }
        }
    }
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read credentials", &f, e)),
        };
        let found = from_config(&text, registry)
            .map_err(|m| Error::msg(format!("read credentials {}: {m}", f.display())))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn from_config(
    text: &str,
    registry: &str,
) -> std::result::Result<Option<(String, String)>, String> {
    let cfg: ConfigFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let host_of = |k: &str| -> String {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = k.split('/').next().unwrap_or(k);
        match host {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
            h => h.to_string(),
        }
    };
    if let Some(helper) = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| host_of(k) == registry)
        .map(|(_, v)| v.clone())
    {
        return credential_helper(&helper, registry);
    }
    for (k, e) in &cfg.auths {
        if host_of(k) != registry {
            continue;
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Ok(Some((u.clone(), p.clone())));
        }
        if let Some(a) = &e.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| format!("auths.{k}.auth is not base64"))?;
            let s = String::from_utf8(raw).map_err(|_| format!("auths.{k}.auth is not UTF-8"))?;
            let (u, p) = s
                .split_once(':')
                .ok_or_else(|| format!("auths.{k}.auth is not user:password"))?;
            return Ok(Some((u.to_string(), p.to_string())));
        }
    }
    match &cfg.creds_store {
        Some(store) => credential_helper(store, registry),
        None => Ok(None),
    }
}

/// Ask `docker-credential-<name> get`; "not found" is no credentials.
fn credential_helper(
    name: &str,
    registry: &str,
) -> std::result::Result<Option<(String, String)>, String> {
    use std::io::Write;
    let program = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("run {program}: {e}"))?;
    if !out.status.success() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct HelperReply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let r: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("{program} gave an unreadable answer"))?;
    Ok(Some((r.username, r.secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r: Reference = "127.0.0.1:5000/team/app:1.0".parse().unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("1.0"))
        );
        let r: Reference = "localhost:5000/app".parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r: Reference = "alpine".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert!("127.0.0.1:5000/App".parse::<Reference>().is_err());
        assert!("".parse::<Reference>().is_err());
    }

    #[test]
    fn challenges_and_summaries() {
        let c = parse_challenge(r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(c.realm, "https://auth.example/token");
        assert_eq!(c.service.as_deref(), Some("registry.example"));
        assert_eq!(c.scope.as_deref(), Some("repository:a/b:pull,push"));
        assert_eq!(
            summary("<html><body><h1>413 Request Entity Too Large</h1></body></html>"),
            " (413 Request Entity Too Large)"
        );
        assert_eq!(
            summary(r#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            " (DENIED: no)"
        );
        assert!(
            is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:5000")
        );
        assert!(!is_loopback("registry.example:5000"));
    }

    #[test]
    fn locations_resolve_against_the_url_that_answered() {
        let base = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        let r = |l| resolve(base, l);
        assert_eq!(
            r("/v2/a/blobs/uploads/u?_state=1").as_deref(),
            Some("http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=1")
        );
        assert_eq!(
            r("u").as_deref(),
            Some("http://127.0.0.1:5000/v2/a/blobs/uploads/u")
        );
        assert_eq!(
            r("?digest=x").as_deref(),
            Some("http://127.0.0.1:5000/v2/a/blobs/uploads/?digest=x")
        );
        assert_eq!(
            r("//127.0.0.2:9/b").as_deref(),
            Some("http://127.0.0.2:9/b")
        );
        assert_eq!(
            r("HTTPS://s.example/b").as_deref(),
            Some("HTTPS://s.example/b")
        );
        assert_eq!(r("ftp://s.example/b"), None);
        assert_eq!(
            resolve("http://127.0.0.1:5000", "x").as_deref(),
            Some("http://127.0.0.1:5000/x")
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |u| Origin::of(u).unwrap();
        assert_eq!(o("https://Reg.Example/v2/"), o("https://reg.example:443/x"));
        assert_eq!(o("http://r/"), o("http://r:80/"));
        assert_ne!(o("http://127.0.0.1:5000/"), o("http://127.0.0.2:5000/"));
        assert_ne!(o("http://r:5000/"), o("https://r:5000/"));
        assert_ne!(o("http://r:5000/"), o("http://r:5001/"));
        // Userinfo does not make another host look like the registry.
        assert_eq!(
            o("http://127.0.0.1:5000@evil.example/").host,
            "evil.example"
        );
        assert!(Origin::of("/relative").is_none());
    }

    #[test]
    fn docker_config_credentials() {
        let text = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5000":{"auth":"YTpi"}}}"#;
        assert_eq!(
            from_config(text, "docker.io").unwrap(),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            from_config(text, "127.0.0.1:5000").unwrap(),
            Some(("a".into(), "b".into()))
        );
        assert_eq!(from_config(text, "other").unwrap(), None);
    }
}
