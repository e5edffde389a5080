//! Names and annotations: the full reference in index.json (as containerd
//! and Docker 25+ read it), `org.opencontainers.image.created` from the
//! epoch, and the recipe's `[annotations]` and `[index_annotations]`.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> Value {
    json(
        &layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
}

#[test]
fn index_json_names_the_full_reference_and_annotations_reach_their_blobs() {
    let tmp = tempdir();
    let d = tmp.path();
    fs::write(d.join("hello.txt"), "hello\n").unwrap();
    let recipe = d.join("names.toml");
    fs::write(
        &recipe,
        "name = \"127.0.0.1:5000/team/names\"\ntag = \"v1\"\n\
         platforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         [[file]]\nsrc = \"hello.txt\"\ndest = \"/hello.txt\"\n\
         [annotations]\n\"org.opencontainers.image.title\" = \"names\"\n\
         [index_annotations]\n\"org.opencontainers.image.vendor\" = \"acme\"\n",
    )
    .unwrap();
    let out = d.join("out");
    ok(bareroot()
        .args(["build", "--quiet", "--epoch", "1700000000", "--output"])
        .arg(&out)
        .arg(&recipe));
    let index = json(&out.join("index.json"));
    let top = &index["manifests"][0];
    assert_eq!(
        top["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert_eq!(
        top["annotations"]["io.containerd.image.name"], "127.0.0.1:5000/team/names:v1",
        "{index}"
    );
    let image_index = blob(&out, top["digest"].as_str().unwrap());
    assert_eq!(
        image_index["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        image_index["annotations"]["org.opencontainers.image.vendor"],
        "acme"
    );
    for m in image_index["manifests"].as_array().unwrap() {
        let manifest = blob(&out, m["digest"].as_str().unwrap());
        let a = &manifest["annotations"];
        assert_eq!(
            a["org.opencontainers.image.created"], "2023-11-14T22:13:20Z",
            "{a}"
        );
        assert_eq!(a["org.opencontainers.image.title"], "names", "{a}");
        assert!(a["dev.bareroot.version"].is_string(), "{a}");
    }

    // A bare name is normalized as Docker normalizes it; skopeo reads the
    // layout by tag as before.
    let single = d.join("single.toml");
    fs::write(
        &single,
        "name = \"jq-names\"\n[[file]]\nsrc = \"hello.txt\"\ndest = \"/hello.txt\"\n",
    )
    .unwrap();
    let out = d.join("single");
    ok(bareroot()
        .args(["build", "--quiet", "--output"])
        .arg(&out)
        .arg(&single));
    let index = json(&out.join("index.json"));
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/jq-names:latest"
    );
    let skopeo = require("skopeo", "skopeo");
    ok(std::process::Command::new(skopeo)
        .arg("inspect")
        .arg(format!("oci:{}:latest", out.display())));
}

#[test]
fn vcs_true_annotates_the_commit_and_names_a_dirty_tree() {
    let tmp = tempdir();
    let d = tmp.path().join("repo");
    fs::create_dir(&d).unwrap();
    let git = |args: &[&str]| {
        ok(std::process::Command::new("git")
            .arg("-C")
            .arg(&d)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args))
    };
    git(&["init", "-q"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://user:secret@git.example.org/acme/app.git",
    ]);
    fs::write(d.join("hello.txt"), "hello\n").unwrap();
    fs::write(
        d.join("r.toml"),
        "name = \"vcs\"\nvcs = true\n[[file]]\nsrc = \"hello.txt\"\ndest = \"/hello.txt\"\n",
    )
    .unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    let head = git(&["rev-parse", "HEAD"]).trim().to_string();
    let build = |out: &str| {
        let o = run(bareroot()
            .args(["build", "--output"])
            .arg(tmp.path().join(out))
            .arg(d.join("r.toml")));
        assert!(o.status.success(), "{}", stderr(&o));
        (last_line(&stdout(&o)), stderr(&o))
    };
    let (a, err) = build("a");
    assert!(!err.contains("uncommitted"), "{err}");
    let (b, _) = build("b");
    assert_eq!(a, b, "one commit, one image");
    let index = json(&tmp.path().join("a/index.json"));
    let manifest = blob(
        &tmp.path().join("a"),
        index["manifests"][0]["digest"].as_str().unwrap(),
    );
    let ann = &manifest["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.revision"],
        head.as_str(),
        "{ann}"
    );
    assert_eq!(
        ann["org.opencontainers.image.source"], "https://git.example.org/acme/app.git",
        "no credentials in the annotation: {ann}"
    );

    // A change not committed: the same annotations, and a note.
    fs::write(d.join("hello.txt"), "changed\n").unwrap();
    let (_, err) = build("c");
    assert!(err.contains("uncommitted changes"), "{err}");

    // Outside a checkout: one line.
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::copy(d.join("r.toml"), plain.join("r.toml")).unwrap();
    fs::copy(d.join("hello.txt"), plain.join("hello.txt")).unwrap();
    let o = run(bareroot()
        .args(["build", "--output"])
        .arg(tmp.path().join("never"))
        .arg(plain.join("r.toml")));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("git checkout"), "{err}");
}
