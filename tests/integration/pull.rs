//! Pull: images sent to Debian's docker-registry by `bareroot push` (OCI)
//! and skopeo (Docker schema2), fetched back with the library's
//! `registry::pull` into a store and checked file by file: every name is
//! the hash of its bytes, nothing else is there. The distribution harness
//! supplies the registry (anonymous and htpasswd) and the proxy that
//! demands tokens, redirects blob GETs to a second loopback address and
//! injects faults.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use bareroot::platform::Platform;
use bareroot::registry::{self, Options, Reference};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::distribution::{
    assert_success, auth_json, describe, isolate, layout_blobs, multiarch, shell, Fault, Proxy,
    Registry, Trigger, PASSWORD, USER,
};
use crate::support::{bareroot, require, run, tempdir};

fn reference(s: &str) -> Reference {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn opts() -> Options {
    Options {
        quiet: true,
        ..Options::default()
    }
}

fn platform(s: &str) -> Platform {
    s.parse().unwrap()
}

/// The credentials file the pulls of this process read
/// (`REGISTRY_AUTH_FILE`). It is set once, before any registry of these
/// tests starts, and names only their loopback registries; bareroot
/// commands the tests run are isolated from it.
fn auth_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let f = crate::support::run_dir("pull").join("auth.json");
        // Tools that read it (skopeo) find a valid file from the start.
        fs::write(&f, r#"{"auths":{}}"#).unwrap();
        std::env::set_var("REGISTRY_AUTH_FILE", &f);
        f
    })
}

/// `bareroot push --quiet LAYOUT REF`, with credentials only from `auth`.
fn push(layout: &Path, to: &str, auth: Option<&Path>) {
    let home = tempdir();
    let mut cmd = bareroot();
    isolate(&mut cmd, home.path());
    if let Some(a) = auth {
        cmd.env("REGISTRY_AUTH_FILE", a);
    }
    let o = run(cmd.arg("push").arg("--quiet").arg(layout).arg(to));
    assert_success(&o, &format!("bareroot push {to}"), "");
}

/// The store's blobs, digest → size, each checked against its name; no
/// temporary file may be left.
fn store_blobs(store: &Path) -> BTreeMap<String, u64> {
    let blobs = store.join("blobs");
    let others: Vec<_> = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "sha256")
        .collect();
    assert!(others.is_empty(), "left in {}: {others:?}", blobs.display());
    let mut out = BTreeMap::new();
    for e in fs::read_dir(blobs.join("sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = fs::read(e.path()).unwrap();
        let name = format!("sha256:{}", e.file_name().to_string_lossy());
        assert_eq!(
            format!("sha256:{:x}", Sha256::digest(&bytes)),
            name,
            "a blob in the store is not what its name says"
        );
        out.insert(name, bytes.len() as u64);
    }
    out
}

fn manifest_json(store: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// A pull's error as one line, starting with "pull REF".
fn pull_error(r: &str, platforms: &[Platform], store: &Path) -> String {
    let e = registry::pull(&reference(r), platforms, store, &opts())
        .map(|d| d.digest.to_string())
        .expect_err("the pull must fail")
        .to_string();
    assert!(
        !e.contains('\n') && e.starts_with(&format!("pull {}", reference(r))),
        "one line naming the reference: {e}"
    );
    e
}

#[test]
fn pull_oci_and_docker_schema2_and_again_by_digest_with_the_registry_stopped() {
    require("skopeo", "skopeo");
    auth_file();
    let shell = shell();
    let reg = Registry::start(None);
    let host = reg.host();
    let tmp = tempdir();

    // OCI, as bareroot pushed it.
    push(&shell.layout, &format!("{host}/pull/oci:1"), None);
    let oci_store = tmp.path().join("oci");
    let r = format!("{host}/pull/oci:1");
    let top = registry::pull(&reference(&r), &[], &oci_store, &opts()).unwrap();
    assert_eq!(top.digest.as_str(), shell.digest);
    assert_eq!(top.media_type, "application/vnd.oci.image.manifest.v1+json");
    let mut want = layout_blobs(&shell.layout);
    want.insert(shell.digest.clone(), top.size);
    assert_eq!(store_blobs(&oci_store), want, "{}", reg.log());

    // Docker schema2, as skopeo converts it.
    let o = run(Command::new("skopeo")
        .args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
        .arg(format!("oci:{}", shell.layout.display()))
        .arg(format!("docker://{host}/pull/docker:1"))
        .stdin(Stdio::null()));
    assert_success(&o, "skopeo copy --format v2s2", &reg.log());
    let docker_store = tmp.path().join("docker");
    let r = format!("{host}/pull/docker:1");
    let docker = registry::pull(
        &reference(&r),
        &[platform("linux/amd64")],
        &docker_store,
        &opts(),
    )
    .unwrap();
    assert_eq!(
        docker.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let m = manifest_json(&docker_store, docker.digest.as_str());
    let blobs = store_blobs(&docker_store);
    assert_eq!(blobs.len(), 2 + m["layers"].as_array().unwrap().len());
    assert!(blobs.contains_key(m["config"]["digest"].as_str().unwrap()));

    // Pinned by digest, everything in the store: no network needed.
    drop(reg);
    for (store, top) in [(&oci_store, &top), (&docker_store, &docker)] {
        let repo = if store == &oci_store { "oci" } else { "docker" };
        let pinned = format!("{host}/pull/{repo}@{}", top.digest);
        let again = registry::pull(&reference(&pinned), &[], store, &opts())
            .unwrap_or_else(|e| panic!("pull {pinned} with the registry stopped: {e}"));
        assert_eq!(&again, top);
    }
    // A tag needs the registry: one line, after retries.
    let e = pull_error(&format!("{host}/pull/oci:1"), &[], &oci_store);
    assert!(
        e.to_lowercase().contains("connection refused") && e.contains("attempts"),
        "{e}"
    );
}

#[test]
fn pull_chooses_one_platform_of_an_index() {
    auth_file();
    let built = multiarch();
    let reg = Registry::shared();
    let r = format!("{}/pull/multiarch:1", reg.host());
    push(&built.layout, &r, None);
    let store = tempdir();
    let top = registry::pull(
        &reference(&r),
        &[platform("linux/arm64")],
        store.path(),
        &opts(),
    )
    .unwrap();
    assert_eq!(top.digest.as_str(), built.digest);
    assert_eq!(top.media_type, "application/vnd.oci.image.index.v1+json");
    let index = manifest_json(store.path(), &built.digest);
    let arm64: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["platform"]["architecture"] == "arm64")
        .collect();
    let [arm64] = arm64[..] else {
        panic!("one arm64 manifest in {index}")
    };
    let m = manifest_json(store.path(), arm64["digest"].as_str().unwrap());
    let mut want: BTreeMap<String, u64> = std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .chain([arm64])
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_string(),
                d["size"].as_u64().unwrap(),
            )
        })
        .collect();
    want.insert(built.digest.clone(), top.size);
    assert_eq!(store_blobs(store.path()), want, "only arm64's blobs");

    let e = pull_error(&r, &[platform("linux/s390x")], store.path());
    assert!(
        e.contains("linux/s390x") && e.contains("linux/arm64/v8"),
        "{e}"
    );
}

#[test]
fn pull_with_htpasswd_basic_auth() {
    let htpasswd = require("htpasswd", "apache2-utils");
    let shell = shell();
    let auth = auth_file();
    let tmp = tempdir();
    let o = run(Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]));
    assert_success(&o, "htpasswd", "");
    let file = tmp.path().join("htpasswd");
    fs::write(&file, &o.stdout).unwrap();
    let reg = Registry::start(Some(&file));
    let host = reg.host();
    let creds = tmp.path().join("push-auth.json");
    fs::write(&creds, auth_json(&host, PASSWORD)).unwrap();
    let r = format!("{host}/pull/private:1");
    push(&shell.layout, &r, Some(&creds));

    // No credentials for this registry yet.
    let store = tmp.path().join("store");
    let e = pull_error(&r, &[], &store);
    assert!(e.contains(&host) && e.contains("login"), "{e}");
    assert!(!e.contains(PASSWORD), "{e}");

    // This registry's entry in the process's REGISTRY_AUTH_FILE.
    let staged = auth.with_extension("new");
    fs::write(&staged, auth_json(&host, PASSWORD)).unwrap();
    fs::rename(&staged, auth).unwrap();
    let top = registry::pull(&reference(&r), &[], &store, &opts())
        .unwrap_or_else(|e| panic!("pull with credentials: {e}{}", reg.log()));
    assert_eq!(top.digest.as_str(), shell.digest);
}

#[test]
fn pull_follows_blob_redirects_without_sending_credentials_elsewhere() {
    auth_file();
    let shell = shell();
    let reg = Registry::shared();
    push(
        &shell.layout,
        &format!("{}/pull/redirect:1", reg.host()),
        None,
    );
    let storage = Proxy::start_on([127, 0, 0, 2], reg.port);
    let proxy = Proxy::start(reg.port);
    proxy.with(|s| {
        s.bearer = true;
        s.no_scope = true;
        s.redirect_blobs = Some(storage.host());
    });
    let store = tempdir();
    let r = format!("{}/pull/redirect:1", proxy.host());
    let result = registry::pull(&reference(&r), &[], store.path(), &opts());
    let here = proxy.take_log();
    let there = storage.take_log();
    let logs = format!("{}{}", describe(&here), describe(&there));
    let top = result.unwrap_or_else(|e| panic!("{e}{logs}"));
    assert_eq!(top.digest.as_str(), shell.digest);
    let blobs = layout_blobs(&shell.layout);
    assert!(
        here.iter().filter(|s| s.status == 307).count() == blobs.len()
            && there.iter().filter(|s| s.status == 200).count() == blobs.len(),
        "every blob was redirected to {} and served there{logs}",
        storage.host()
    );
    assert!(
        here.iter()
            .any(|s| s.path.contains("/manifests/") && s.authorization.is_some()),
        "the registry got the token{logs}"
    );
    for s in &there {
        assert_eq!(
            s.authorization, None,
            "{} at the storage host{logs}",
            s.path
        );
    }
    let scopes = proxy.with(|s| s.scopes.clone());
    assert!(
        !scopes.is_empty() && scopes.iter().all(|s| s == "repository:pull/redirect:pull"),
        "a pull asks for pull only: {scopes:?}"
    );
    assert_eq!(store_blobs(store.path()).len(), blobs.len() + 1);
}

#[test]
fn pull_errors_are_one_line() {
    auth_file();
    let shell = shell();
    let reg = Registry::shared();
    push(
        &shell.layout,
        &format!("{}/pull/errors:1", reg.host()),
        None,
    );
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let tag = format!("{host}/pull/errors:1");
    let pinned = format!("{host}/pull/errors@{}", shell.digest);
    let tmp = tempdir();
    let mut n = 0;
    let mut fail = |r: &str, fault: Option<(&'static str, Fault)>| -> (String, PathBuf) {
        n += 1;
        let store = tmp.path().join(n.to_string());
        proxy.with(|s| {
            s.triggers = fault
                .map(|(path, f)| Trigger::new("GET", path, f))
                .into_iter()
                .collect()
        });
        let e = pull_error(r, &[], &store);
        (e, store)
    };

    let (e, _) = fail(&format!("{host}/pull/errors:nope"), None);
    assert!(e.contains("get manifest nope") && e.contains("404"), "{e}");

    let (e, store) = fail(&tag, Some(("/blobs/", Fault::Corrupt)));
    assert!(
        e.contains("fetch blob sha256:") && e.contains("hashing to"),
        "{e}"
    );
    let bad = e
        .split("fetch blob ")
        .nth(1)
        .unwrap()
        .split(':')
        .take(2)
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        !store_blobs(&store).contains_key(&bad),
        "the blob that did not match is not in the store: {e}"
    );

    let (e, _) = fail(&tag, Some(("/manifests/", Fault::Corrupt)));
    assert!(e.contains("the registry says sha256:"), "{e}");
    let (e, _) = fail(&pinned, Some(("/manifests/", Fault::Corrupt)));
    assert!(e.contains(&format!("not {}", shell.digest)), "{e}");
    let (e, _) = fail(&tag, Some(("/manifests/", Fault::Oversized)));
    assert!(e.contains("over the 4 MiB limit"), "{e}");
    let (e, _) = fail(&tag, Some(("/manifests/", Fault::Schema1)));
    assert!(
        e.contains("unexpected media type")
            && e.contains("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        "{e}"
    );
}
