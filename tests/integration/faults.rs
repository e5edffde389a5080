//! Faults during a build: killed at random points, or two builds to one
//! output at once. The output is always the previous image or the complete
//! new one, and every blob hashes to its name.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::*;

/// The layout at `dir` is complete and consistent; its top digest.
fn check_layout(dir: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json")).unwrap();
    for e in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let bytes = fs::read(e.path()).unwrap();
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, name, "blob {name} does not hash to its name");
    }
    let top = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(dir.join("blobs/sha256").join(&top[7..]).is_file());
    top
}

#[test]
fn killed_builds_leave_the_previous_image_or_the_new_one() {
    let tmp = tempdir();
    let out = tmp.path().join("img");
    let shell = repo().join("recipes/shell.toml");
    let hello = repo().join("recipes/hello.toml");
    let previous = build(&hello, &out);
    let new = build(&shell, &tmp.path().join("reference"));
    for i in 0..30u64 {
        let mut child = bareroot()
            .arg("build")
            .arg(&shell)
            .arg("--output")
            .arg(&out)
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the build (a few to a few hundred ms).
        std::thread::sleep(Duration::from_millis((i * 37) % 400));
        let _ = child.kill();
        let _ = child.wait();
        let top = check_layout(&out);
        assert!(
            top == previous || top == new,
            "kill #{i}: unexpected image {top}"
        );
        if top == new {
            // Back to the previous image for the next round.
            build(&hello, &out);
        }
    }
}

#[test]
fn two_builds_to_one_output_both_succeed() {
    let tmp = tempdir();
    let out = tmp.path().join("img");
    let recipe = repo().join("recipes/shell.toml");
    let spawn = || {
        bareroot()
            .arg("build")
            .arg(&recipe)
            .arg("--output")
            .arg(&out)
            .arg("--quiet")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(
        check_layout(&out),
        last_line(&String::from_utf8_lossy(&a.stdout))
    );
}
