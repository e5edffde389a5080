//! `--load` and `bareroot load`: hand a built image straight to a
//! container engine, as a tar stream on the engine's standard input (no
//! file on disk): a docker-archive to `docker load` or `podman load`, the
//! oci-archive to containerd's `ctr images import -` (which names the image
//! by `io.containerd.image.name`). The engine's own answer is returned.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::oci::Layout;
use crate::platform::Platform;

/// An engine bareroot loads into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
    Containerd,
}

impl std::str::FromStr for Engine {
    type Err = Error;

    fn from_str(s: &str) -> Result<Engine> {
        match s {
            "docker" => Ok(Engine::Docker),
            "podman" => Ok(Engine::Podman),
            "containerd" => Ok(Engine::Containerd),
            other => Err(Error::msg(format!(
                "parse engine {other:?}: expected docker, podman or containerd"
            ))),
        }
    }
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::Containerd => "containerd",
        }
    }

    /// The program run, and how to install it on Debian.
    fn program(self) -> (&'static str, &'static str) {
        match self {
            Engine::Docker => ("docker", "apt-get install docker.io"),
            Engine::Podman => ("podman", "apt-get install podman"),
            Engine::Containerd => ("ctr", "apt-get install containerd"),
        }
    }
}

/// How to load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub engine: Engine,
    /// Which image of a multi-platform layout [default: the host's].
    pub platform: Option<Platform>,
    /// containerd's namespace.
    pub namespace: String,
    /// `name:tag` for docker and podman.
    pub repo_tag: String,
    /// The archive's mtimes.
    pub epoch: u64,
}

/// Load the image at `layout` into the engine; the engine's output.
pub fn load(layout: &Path, opts: &LoadOptions) -> Result<String> {
    let what = format!("load {} into {}", layout.display(), opts.engine.name());
    let fail = |m: String| Error::msg(format!("{what}: {m}"));
    let layout = Layout::open(layout)?;
    let (program, install) = opts.engine.program();
    let mut cmd = Command::new(program);
    let image = match opts.engine {
        Engine::Docker | Engine::Podman => {
            cmd.arg("load");
            Some(
                layout
                    .choose(opts.platform.as_ref())
                    .map_err(|e| fail(e.to_string()))?,
            )
        }
        Engine::Containerd => {
            cmd.args(["--namespace", &opts.namespace, "images", "import"]);
            let p = match &opts.platform {
                Some(p) => p.clone(),
                None => layout
                    .choose(None)
                    .map_err(|e| fail(e.to_string()))?
                    .platform
                    .display()
                    .parse()?,
            };
            cmd.args(["--platform", &p.to_string(), "-"]);
            None
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(format!(
                "{program} is not installed or not on PATH ({install})"
            )),
            _ => fail(format!("run {program}: {e}")),
        })?;
    // The engine's answers are read while the archive is written, so a
    // full pipe can never stall either side.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let t = std::thread::spawn(move || {
            let _ = (&mut stderr).take(1 << 20).read_to_end(&mut e);
            e
        });
        let _ = (&mut stdout).take(1 << 20).read_to_end(&mut o);
        (o, t.join().unwrap_or_default())
    });
    let mut stdin = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
    let written = match &image {
        Some(image) => crate::sink::archive::stream_docker_archive(
            &layout,
            image,
            &opts.repo_tag,
            opts.epoch,
            &mut stdin,
        ),
        None => crate::sink::archive::stream_oci_archive(layout.root(), opts.epoch, &mut stdin),
    };
    let flushed = stdin.flush();
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| fail(format!("wait for {program}: {e}")))?;
    let (out, err) = reader.join().unwrap_or_default();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if !status.success() {
        let msg = text(&err);
        let first = msg.lines().last().unwrap_or("").to_string();
        return Err(fail(format!(
            "{program} {} failed ({status}){}",
            if opts.engine == Engine::Containerd {
                "images import"
            } else {
                "load"
            },
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        )));
    }
    written.map_err(|e| fail(e.to_string()))?;
    flushed.map_err(|e| fail(format!("write to {program}: {e}")))?;
    let mut answer = text(&out);
    if answer.is_empty() {
        answer = text(&err);
    }
    Ok(answer)
}
