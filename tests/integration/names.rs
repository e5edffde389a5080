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
