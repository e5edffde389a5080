//! `--load` and `bareroot load`: the image streamed into an engine's
//! store (podman here; Docker and containerd in engines.rs when present),
//! and one-line errors for an unknown or missing engine.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

/// podman's storage as `podman load` finds it without flags (bareroot runs
/// plain `podman load`): the same store as `Podman::cmd` uses.
fn podman_env(cmd: &mut Command) -> &mut Command {
    // Podman::get checks podman and runc and writes containers.conf.
    Podman::get();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("podman");
    let storage = dir.join("storage.conf");
    fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", storage)
}

#[test]
fn load_podman_streams_the_image_and_it_runs() {
    let tmp = tempdir();
    let out = tmp.path().join("hello");
    let o = run(podman_env(
        bareroot()
            .args(["build", "--load", "podman", "--output"])
            .arg(&out)
            .arg(repo().join("recipes/hello.toml")),
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Loaded image") && stderr(&o).contains("hello:latest"),
        "podman's answer is shown: {}",
        stderr(&o)
    );
    let o = run(Podman::get()
        .cmd()
        .args(["run", "--rm", "--network", "none", "hello:latest"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "hello from a bareroot image");

    // bareroot load of the same layout: its full name from index.json.
    let o = run(podman_env(
        bareroot().arg("load").arg(&out).args(["--into", "podman"]),
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("docker.io/library/hello:latest"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn load_errors_are_one_line_and_come_before_the_build() {
    let tmp = tempdir();
    let out = tmp.path().join("never");
    let o = run(bareroot()
        .args(["build", "--load", "nerd", "--output"])
        .arg(&out)
        .arg(repo().join("recipes/hello.toml")));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("docker, podman or containerd"), "{err}");
    assert!(!out.exists(), "nothing is built for an unknown engine");

    // An engine that is not installed: named, with how to install it.
    let empty = tmp.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let layout = tmp.path().join("hello");
    ok(bareroot()
        .args(["build", "--quiet", "--output"])
        .arg(&layout)
        .arg(repo().join("recipes/hello.toml")));
    let o = run(bareroot()
        .env("PATH", &empty)
        .arg("load")
        .arg(&layout)
        .args(["--into", "containerd"]));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("ctr is not installed") && err.contains("apt-get install containerd"),
        "{err}"
    );
}
