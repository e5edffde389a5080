//! Conformance: every layout bareroot writes validates against the OCI
//! image-spec JSON schemas (from ../shared/oci-image-spec-schema), and an
//! independent tar reader (Python's tarfile) audits every layer: sorted
//! entries, parents first, one format, empty user/group names, every mtime
//! the epoch, a fixed gzip header, diff_ids that match.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

fn schemas() -> PathBuf {
    let dir = repo().join("../shared/oci-image-spec-schema");
    assert!(
        dir.join("image-manifest-schema.json").is_file(),
        "the OCI image-spec schemas are expected in {} (the shared/ folder beside the repository)",
        dir.display()
    );
    dir
}

fn check(layout: &std::path::Path) {
    let o = run(Command::new("python3")
        .arg(repo().join("tests/conformance/check_layout.py"))
        .arg(schemas())
        .arg(layout));
    assert!(
        o.status.success(),
        "{} does not conform:\n{}{}",
        layout.display(),
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn every_recipe_image_validates_and_its_layers_pass_the_tar_audit() {
    let ok_python = run(Command::new("python3").args(["-c", "import jsonschema, referencing"]));
    assert!(
        ok_python.status.success(),
        "this test needs python3 with jsonschema: pip install jsonschema (scripts/test.sh installs it)"
    );
    let tmp = tempdir();
    let mut recipes: Vec<PathBuf> = std::fs::read_dir(repo().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    recipes.sort();
    for r in &recipes {
        let name = r.file_stem().unwrap().to_string_lossy().into_owned();
        let out = tmp.path().join(&name);
        // --attach-sbom on every build: the artifact manifest validates too.
        ok(bareroot()
            .arg("build")
            .arg(r)
            .arg("--output")
            .arg(&out)
            .arg("--quiet")
            .arg("--attach-sbom"));
        check(&out);
    }
    // Uncompressed layers too.
    let out = tmp.path().join("none");
    build_with(
        &repo().join("recipes/shell.toml"),
        &out,
        &["--compression", "none"],
    );
    check(&out);
}

fn build_with(recipe: &std::path::Path, out: &std::path::Path, extra: &[&str]) {
    ok(bareroot()
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(out)
        .arg("--quiet")
        .args(extra));
}
