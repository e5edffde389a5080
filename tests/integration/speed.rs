//! Compression and parallelism never change the bytes: every --jobs gives
//! the same digest for gzip, zstd and uncompressed layers, and each kind of
//! layer is a valid image that runs.

use std::collections::BTreeSet;

use crate::support::*;

#[test]
fn jobs_never_change_the_digest_and_every_compression_runs() {
    let tmp = tempdir();
    let recipe = repo().join("recipes/shell.toml");
    for (compression, media_type) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let mut digests = BTreeSet::new();
        for jobs in [1, 2, 8] {
            let out = tmp.path().join(format!("{compression}-{jobs}"));
            let s = ok(bareroot()
                .arg("build")
                .arg(&recipe)
                .arg("--output")
                .arg(&out)
                .arg("--quiet")
                .arg("--compression")
                .arg(compression)
                .arg("--jobs")
                .arg(jobs.to_string()));
            digests.insert(last_line(&s));
        }
        assert_eq!(
            digests.len(),
            1,
            "{compression}: digests differ across --jobs: {digests:?}"
        );
        let out = tmp.path().join(format!("{compression}-2"));
        let report: serde_json::Value =
            serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(&out))).unwrap();
        let layer = &report[0]["images"][0]["layers"][0];
        assert_eq!(layer["mediaType"], media_type);
        if compression == "none" {
            assert_eq!(
                layer["digest"], layer["diff_id"],
                "an uncompressed layer's digest is its diff_id"
            );
        }
        let o = ok(bareroot().arg("run").arg(&out));
        assert_eq!(
            o.trim(),
            "hello from a bareroot shell image",
            "{compression}"
        );
    }
}

#[test]
fn compression_setting_is_checked() {
    let tmp = tempdir();
    let o = run(bareroot()
        .arg("build")
        .arg(repo().join("recipes/hello.toml"))
        .arg("--output")
        .arg(tmp.path().join("x"))
        .arg("--compression")
        .arg("gzip:12"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--compression") && err.contains("gzip:12"),
        "{err}"
    );
    assert!(!tmp.path().join("x").exists());
}
