//! Issue 12's fixes: `why` names the package that put each scanner file
//! (status.d, md5sums, copyright, os-release) in the image, asked of a
//! recipe and of the built layout; errors of `why` and of
//! `build --docker-archive --platform` start with the command's verb, and
//! the archive's platform is checked before anything is built.

use std::path::Path;

use crate::support::{bareroot, build, ok, repo, run, stderr, tempdir};

fn why(target: &Path, path: &str) -> String {
    ok(bareroot().arg("why").arg(target).arg(path))
}

#[test]
fn why_names_the_package_of_every_scanner_file_for_a_recipe_and_a_layout() {
    let tmp = tempdir();
    let recipe = repo().join("recipes/shell.toml");
    let layout = tmp.path().join("shell");
    build(&recipe, &layout);
    let expect = [
        (
            "/etc/os-release",
            "the distribution's os-release, from package base-files",
        ),
        (
            "/var/lib/dpkg/status.d/bash",
            "the dpkg status of package bash",
        ),
        (
            "/var/lib/dpkg/status.d/bash.md5sums",
            "the file list (md5sums) of package bash",
        ),
        (
            "/usr/share/doc/bash/copyright",
            "the copyright file of package bash",
        ),
    ];
    for target in [recipe.as_path(), layout.as_path()] {
        for (path, reason) in expect {
            let w = why(target, path);
            assert!(
                w.starts_with(&format!("{path} (file) is in the image because:"))
                    && w.contains(&format!("package metadata for scanners: {reason}")),
                "why {} {path}:\n{w}",
                target.display()
            );
            assert!(!w.contains("placed by the recipe"), "{w}");
        }
    }
    // The package's own files are still explained by their recipe entry
    // or closure, not as metadata.
    let w = why(&recipe, "/usr/bin/bash");
    assert!(!w.contains("package metadata"), "{w}");
}

#[test]
fn why_errors_start_with_why() {
    let tmp = tempdir();
    let recipe = repo().join("recipes/hello.toml");
    let layout = tmp.path().join("hello");
    build(&recipe, &layout);
    let cases: [(&Path, &[&str]); 4] = [
        (&recipe, &["/no/such/file"]),
        (&layout, &["/no/such/file"]),
        (&layout, &["/hello", "--platform", "linux/s390x"]),
        (&tmp.path().join("missing.toml"), &["/hello"]),
    ];
    for (target, args) in cases {
        let o = run(bareroot().arg("why").arg(target).args(args));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(
            e.starts_with(&format!("bareroot: why {} ", target.display())),
            "{args:?}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
    let o = run(bareroot()
        .arg("why")
        .arg(&layout)
        .args(["/hello", "--platform", "linux/s390x"]));
    assert!(
        stderr(&o).contains("no image for linux/s390x (it has linux/amd64)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_docker_archive_platform_the_recipe_lacks_fails_before_the_build() {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let archive = tmp.path().join("image.tar");
    let o = run(bareroot()
        .arg("build")
        .arg(repo().join("recipes/hello.toml"))
        .arg("--output")
        .arg(&out)
        .arg("--docker-archive")
        .arg(&archive)
        .args(["--platform", "linux/s390x", "--quiet"]));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.starts_with("bareroot: build "), "{e}");
    assert!(
        e.contains("no image for linux/s390x (the recipe builds linux/amd64)"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // Nothing was built or written: no layout, no staging directory, no
    // archive.
    assert!(!out.exists() && !archive.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn why_on_a_layout_reads_its_package_lists_inside_the_image_only() {
    // An image whose md5sums list is a symlink to /dev/zero: followed on
    // the host it would be read until memory ran out; inside the image it
    // resolves to nothing regular and is left alone.
    let tmp = tempdir();
    let recipe = tmp.path().join("evil.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"evil\"\n[[binary]]\nsrc = \"{}\"\ndest = \"/hello\"\n\n\
             [[symlink]]\ndest = \"/var/lib/dpkg/status.d/evil.md5sums\"\ntarget = \"/dev/zero\"\n\n\
             [[symlink]]\ndest = \"/var/lib/dpkg/status.d/evil\"\ntarget = \"/etc/passwd\"\n",
            repo().join("recipes/hello/hello").display()
        ),
    )
    .unwrap();
    let layout = tmp.path().join("evil-layout");
    build(&recipe, &layout);
    let bin = bareroot().get_program().to_owned();
    for path in [
        "/hello",
        "/var/lib/dpkg/status.d/evil.md5sums",
        "/var/lib/dpkg/status.d/evil",
    ] {
        let w = ok(std::process::Command::new("timeout")
            .arg("60")
            .arg(&bin)
            .arg("why")
            .arg(&layout)
            .arg(path));
        assert!(!w.contains("package metadata"), "why {path}:\n{w}");
    }
}
