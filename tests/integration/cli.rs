//! CLI conventions: shell completions, the man page, the exit codes in
//! `--help`, and `--image-refs` read back from a loopback registry.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::distribution::Registry;
use crate::support::{self, bareroot, last_line, ok, require, run, stderr, tempdir};

/// The subcommands, as `bareroot --help` names them.
const COMMANDS: &[&str] = &[
    "build",
    "closure",
    "inspect",
    "run",
    "push",
    "why",
    "pull",
    "load",
    "completions",
    "man",
];

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

#[test]
fn bash_completion_registers_a_function() {
    let script = ok(bareroot().args(["completions", "bash"]));
    let dir = tempdir();
    let file = dir.path().join("bareroot.bash");
    fs::write(&file, &script).unwrap();
    let shown = ok(Command::new("bash")
        .arg("-c")
        .arg(format!("source {}; complete -p bareroot", file.display())));
    assert!(
        shown.contains("-F _bareroot") && shown.trim_end().ends_with(" bareroot"),
        "complete -p bareroot: {shown}"
    );
    // The function completes subcommands after `bareroot `.
    let words = ok(Command::new("bash").arg("-c").arg(format!(
        "source {}; COMP_WORDS=(bareroot ''); COMP_CWORD=1; COMP_LINE='bareroot '; \
         COMP_POINT=9; _bareroot bareroot '' bareroot; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    )));
    for c in COMMANDS {
        assert!(
            words.lines().any(|w| w == *c),
            "bash completes {c}: {words}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let script = ok(bareroot().args(["completions", shell]));
        for c in COMMANDS {
            assert!(
                script.contains(c),
                "{shell} completion mentions {c}:\n{script}"
            );
        }
        // Syntax-checked only where the shell is installed.
        if on_path(shell) {
            let mut child = Command::new(shell)
                .arg("-n")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "{shell} -n");
        }
    }
    assert!(
        ok(bareroot().args(["completions", "fish"])).contains("complete -c bareroot"),
        "fish completion completes bareroot"
    );
}

#[test]
fn completions_refuses_an_unknown_shell() {
    let o = run(bareroot().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("tcsh"), "{}", stderr(&o));
}

/// The page as groff renders it, or (without groff) the roff itself.
fn rendered(roff: &str) -> String {
    assert!(
        roff.lines().any(|l| l.starts_with(".TH ")),
        "a man page has .TH:\n{roff}"
    );
    if !on_path("groff") {
        return roff.to_string();
    }
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(roff.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "groff: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "groff warns: {}", stderr(&o));
    // Without the overstrike of bold and underline.
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        plain.push(c);
    }
    plain
}

#[test]
fn man_page_renders_and_lists_every_subcommand() {
    let page = rendered(&ok(bareroot().arg("man")));
    assert!(page.contains("bareroot"), "{page}");
    for c in COMMANDS {
        assert!(
            page.contains(&format!("bareroot-{c}")) || page.contains(&format!("bareroot\\-{c}")),
            "the man page lists {c}:\n{page}"
        );
    }
    assert!(page.contains("Exit status"), "{page}");
}

#[test]
fn man_output_writes_one_page_per_subcommand() {
    let dir = tempdir();
    let out = dir.path().join("man1");
    let printed = ok(bareroot().arg("man").arg("--output").arg(&out));
    assert_eq!(printed, "", "nothing printed with --output");
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = COMMANDS
        .iter()
        .map(|c| format!("bareroot-{c}.1"))
        .chain(["bareroot.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(names, want);
    let build = rendered(&fs::read_to_string(out.join("bareroot-build.1")).unwrap());
    assert!(build.contains("--image-refs"), "{build}");
    assert_eq!(
        fs::read_to_string(out.join("bareroot.1")).unwrap(),
        ok(bareroot().arg("man")),
        "bareroot.1 is what `bareroot man` prints"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let help = ok(bareroot().arg("--help"));
    let section = help
        .split_once("Exit status:")
        .unwrap_or_else(|| panic!("--help has an exit status section:\n{help}"))
        .1;
    for (code, what) in [
        ("0", "success"),
        ("1", "closure"),
        ("2", "error"),
        ("run", "128+N"),
    ] {
        assert!(
            section
                .lines()
                .any(|l| l.trim_start().starts_with(code) && l.contains(what)),
            "--help documents {code} ({what}):\n{section}"
        );
    }
    // What it says is what bareroot does: a usage error is 2, a missing
    // library 1.
    assert_eq!(run(bareroot().arg("--no-such-flag")).status.code(), Some(2));
    let tmp = tempdir();
    let sysroot = tmp.path();
    let o = run(bareroot()
        .args(["closure", "--sysroot"])
        .arg(sysroot)
        .arg("/bin/true")
        .current_dir(sysroot));
    assert_eq!(o.status.code(), Some(2), "a missing file: {}", stderr(&o));
    let true_bin = fs::canonicalize("/bin/true").unwrap();
    fs::create_dir_all(sysroot.join("bin")).unwrap();
    fs::copy(&true_bin, sysroot.join("bin/true")).unwrap();
    let o = run(bareroot()
        .args(["closure", "--sysroot"])
        .arg(sysroot)
        .arg("/bin/true"));
    assert_eq!(
        o.status.code(),
        Some(1),
        "libc missing from the sysroot: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Each line `REF@DIGEST`, REF as given, DIGEST what the registry serves.
fn assert_image_refs(file: &std::path::Path, refs: &[String], log: &str) {
    let text = fs::read_to_string(file).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), refs.len(), "{text}");
    for r in refs {
        let line = lines
            .iter()
            .find(|l| l.rsplit_once('@').unwrap().0 == r)
            .unwrap_or_else(|| panic!("{r} in {text}"));
        let digest = line.rsplit_once('@').unwrap().1;
        // A reference without a tag is looked up by the digest.
        let tagged = r.rsplit('/').next().unwrap().contains(':');
        let lookup = if tagged {
            r.clone()
        } else {
            format!("{r}@{digest}")
        };
        let o = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{lookup}"))
            .stdin(Stdio::null()));
        assert!(
            o.status.success(),
            "skopeo inspect {r}: {}{log}",
            stderr(&o)
        );
        assert_eq!(sha256(&o.stdout), digest, "{r} on the registry");
    }
}

#[test]
fn image_refs_lists_every_pushed_reference() {
    require("skopeo", "skopeo");
    let reg = Registry::shared();
    let host = reg.host();
    let recipe = support::repo().join("recipes/hello.toml");
    let tmp = tempdir();

    // Without --push it fails before building anything.
    let refs_file = tmp.path().join("refs.txt");
    let o = run(bareroot()
        .arg("build")
        .arg(&recipe)
        .arg("--output")
        .arg(tmp.path().join("never"))
        .arg("--image-refs")
        .arg(&refs_file));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "bareroot: --image-refs needs --push\n");
    assert!(!tmp.path().join("never").exists() && !refs_file.exists());

    // build --push: one line per reference.
    let refs = vec![
        format!("{host}/cli14/hello:1.0"),
        format!("{host}/cli14/hello:latest"),
        format!("{host}/cli14/hello-copy:1.0"),
    ];
    fs::write(&refs_file, "stale\n").unwrap();
    let mut cmd = bareroot();
    cmd.arg("build").arg(&recipe).arg("--quiet");
    for r in &refs {
        cmd.arg("--push").arg(r);
    }
    let digest = last_line(&ok(cmd.arg("--image-refs").arg(&refs_file)));
    let log = fs::read_to_string(&reg.log).unwrap_or_default();
    assert_image_refs(&refs_file, &refs, &log);
    assert!(
        fs::read_to_string(&refs_file)
            .unwrap()
            .lines()
            .all(|l| l.ends_with(&format!("@{digest}"))),
        "the digest build prints"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&refs_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".bareroot"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // push: a layout to a new reference, and one named with its digest.
    let layout = tmp.path().join("layout");
    let built = support::build(&recipe, &layout);
    assert_eq!(built, digest);
    let pushed = vec![
        format!("{host}/cli14/pushed:2"),
        format!("{host}/cli14/pushed-by-digest"),
    ];
    let push_file = tmp.path().join("push-refs");
    ok(bareroot()
        .arg("push")
        .arg(&layout)
        .arg(&pushed[0])
        .arg(format!("{}@{digest}", pushed[1]))
        .arg("--quiet")
        .arg("--image-refs")
        .arg(&push_file));
    let text = fs::read_to_string(&push_file).unwrap();
    assert!(
        text.contains(&format!("{}@{digest}\n", pushed[1])),
        "a reference with a digest is written with it once: {text}"
    );
    let log = fs::read_to_string(&reg.log).unwrap_or_default();
    assert_image_refs(&push_file, &pushed, &log);
}
