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
    // How long a (warm) build takes: the fastest of three.
    let mut fastest = u64::MAX;
    let mut new = String::new();
    for i in 0..3 {
        let started = std::time::Instant::now();
        new = build(&shell, &tmp.path().join(format!("reference-{i}")));
        fastest = fastest.min(started.elapsed().as_micros() as u64);
    }
    // Kill points spread evenly from the start to a little past the time
    // a whole build takes (so some kills land after the commit too).
    let span = fastest * 6 / 5;
    const KILLS: u64 = 100;
    let mut finished = 0;
    for i in 0..KILLS {
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
        // Kill points in a scrambled order (37 is prime to 100), so the
        // rebuilds below do not always follow the same kind of kill.
        std::thread::sleep(Duration::from_micros(span * ((i * 37) % KILLS) / KILLS));
        let _ = child.kill();
        let _ = child.wait();
        let top = check_layout(&out);
        assert!(
            top == previous || top == new,
            "kill #{i}: unexpected image {top}"
        );
        if top == new {
            // Back to the previous image for the next round.
            finished += 1;
            build(&hello, &out);
        }
    }
    // The kills were spread over the build: most interrupted it.
    eprintln!("{finished} of {KILLS} builds finished before their kill");
    assert!(
        finished < KILLS / 2,
        "{finished} of {KILLS} builds finished before their kill"
    );
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
