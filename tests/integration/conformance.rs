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

    // A second opinion: Debian's oci-image-tool (image-spec 1.0) on a
    // gzip image, an uncompressed one and a multi-platform index.
    require("oci-image-tool", "oci-image-tool");
    let gzip = tmp.path().join("gzip");
    build_with(&repo().join("recipes/shell.toml"), &gzip, &[]);
    let index = tmp.path().join("index");
    build_with(&repo().join("recipes/multiarch.toml"), &index, &[]);
    for layout in [&gzip, &out, &index] {
        oci_image_tool(&["--type", "image", "--ref", "name=latest"], layout);
        // It does not descend into a nested index: every document on its own.
        let mut docs = vec![("imageIndex", layout.join("index.json"))];
        while let Some((kind, path)) = docs.pop() {
            oci_image_tool(&["--type", kind], &path);
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let blob = |d: &serde_json::Value| {
                layout
                    .join("blobs/sha256")
                    .join(&d["digest"].as_str().unwrap()[7..])
            };
            for m in v["manifests"].as_array().into_iter().flatten() {
                let kind = match m["mediaType"].as_str() {
                    Some("application/vnd.oci.image.index.v1+json") => "imageIndex",
                    _ => "manifest",
                };
                docs.push((kind, blob(m)));
            }
            if kind == "manifest" {
                docs.push(("config", blob(&v["config"])));
            }
        }
    }
}

/// `oci-image-tool validate ARGS PATH` must succeed.
fn oci_image_tool(args: &[&str], path: &std::path::Path) {
    let o = run(Command::new("oci-image-tool")
        .arg("validate")
        .args(args)
        .arg(path));
    assert!(
        o.status.success(),
        "oci-image-tool validate {args:?} rejects {}:\n{}{}",
        path.display(),
        stdout(&o),
        stderr(&o)
    );
}

/// `bareroot inspect --json` of a layout.
fn inspect(layout: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(layout))).unwrap()
}

/// The paths in the first layer of the first image of an inspect report.
fn layer_paths(report: &serde_json::Value) -> Vec<String> {
    let files = &report[0]["images"][0]["layers"][0]["files"];
    files
        .as_array()
        .unwrap_or_else(|| panic!("no files in {report}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn inspect_reads_layouts_written_by_skopeo_and_umoci() {
    require("skopeo", "skopeo");
    require("umoci", "umoci");
    let tmp = tempdir();
    let t = tmp.path();
    let ours = t.join("ours");
    build_with(&repo().join("recipes/hello.toml"), &ours, &[]);
    let want = layer_paths(&inspect(&ours));

    // skopeo writes its own index.json (and may rewrite manifests).
    let copied = t.join("skopeo");
    ok(Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci:{}:latest", ours.display()))
        .arg(format!("oci:{}:copied", copied.display())));
    let report = inspect(&copied);
    assert_eq!(layer_paths(&report), want, "{report}");

    // umoci: a fresh image with one file, repacked from a bundle.
    let layout = t.join("umoci");
    let bundle = t.join("bundle");
    let umoci = |args: &[&std::ffi::OsStr]| ok(Command::new("umoci").args(args));
    let os = |s: &str| std::ffi::OsString::from(s);
    let image = os(&format!("{}:base", layout.display()));
    umoci(&[&os("init"), &os("--layout"), layout.as_os_str()]);
    umoci(&[&os("new"), &os("--image"), &image]);
    umoci(&[&os("unpack"), &os("--image"), &image, bundle.as_os_str()]);
    std::fs::write(bundle.join("rootfs/greeting.txt"), "from umoci\n").unwrap();
    umoci(&[&os("repack"), &os("--image"), &image, bundle.as_os_str()]);
    let report = inspect(&layout);
    let text = report.to_string();
    assert!(text.contains("greeting.txt"), "{text}");
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
