//! `bareroot run`: run an image's entrypoint in its own rootfs without a
//! container engine. The image's layers are applied in order (whiteouts
//! honoured, `oci::apply`) into a temporary directory, with their real
//! owners and modes when running as root; the program runs chrooted there
//! (inside a new user namespace when not root). Device nodes are not
//! created: the host's /dev is bind-mounted where the image leaves it empty.
//! A foreign platform's program runs under the toolchain's static qemu-user
//! binary, copied into the rootfs, so every file the program and its loader
//! open comes from the image: a library missing from the image fails the run
//! instead of being found on the host (which `qemu -L` would fall back to).

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoResultExt, Result, ResultExt};
use crate::loader::sysroot::{self, HostFs, Node};
use crate::oci::apply::{EntryKind, Tree};
use crate::oci::read::choose_among;
use crate::oci::{FoundImage, Layout};
use crate::platform::Platform;
use crate::recipe::ImagePath;
use crate::toolchain::Toolchains;

/// Where the qemu-user binary is placed inside a foreign rootfs.
const QEMU_IN_ROOTFS: &str = "/.bareroot-qemu";

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Which image of a multi-platform layout [default: the host's, or the only one].
    pub platform: Option<Platform>,
    /// Replace the image's `cmd`.
    pub args: Option<Vec<String>>,
    /// Replace the image's `entrypoint` (and drop its `cmd`), like
    /// `podman run --entrypoint`.
    pub entrypoint: Option<String>,
    /// KEY=VALUE settings over the image's env.
    pub env: Vec<String>,
}

/// Run the image at `layout`; the result is the program's exit code.
pub fn run(layout: &Path, opts: &RunOptions, toolchains: &Toolchains) -> Result<i32> {
    // A layout that can't be read says so itself; the choice of image is
    // the run's.
    let layout = Layout::open(layout)?;
    let all: Vec<FoundImage> = layout.images()?.into_iter().flat_map(|(_, i)| i).collect();
    let image = choose_among(&all, opts.platform.as_ref())
        .context_with(|| format!("run {}", layout.root().display()))?;
    let platform: Platform = image.platform.display().parse()?;
    let ctx = || format!("run {} for {platform}", layout.root().display());
    let toolchain = toolchains.get(&platform).context_with(ctx)?;

    let tmp = tempfile::Builder::new()
        .prefix("bareroot-run-")
        .tempdir()
        .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).with_path("create directory", &rootfs)?;
    let mut tree = layout.unpack_image(&image, &rootfs).context_with(ctx)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        tree.restore_owners().context_with(ctx)?;
    }

    let c = &image.config.config;
    let mut argv: Vec<String> = match &opts.entrypoint {
        Some(e) => vec![e.clone()],
        None => c.entrypoint.clone().unwrap_or_default(),
    };
    match (&opts.args, &opts.entrypoint) {
        (Some(a), _) => argv.extend(a.iter().cloned()),
        (None, None) => argv.extend(c.cmd.clone().unwrap_or_default()),
        (None, Some(_)) => {}
    }
    if argv.is_empty() {
        return Err(Error::msg(format!(
            "{}: the image has no entrypoint or cmd and no arguments were given",
            ctx()
        )));
    }
    let program = find_program(&rootfs, &argv[0], &c.env)
        .map_err(|m| Error::msg(format!("{}: {m}", ctx())))?;
    let (uid, gid) = match &c.user {
        Some(u) => {
            user_ids(&tree, u).map_err(|m| Error::msg(format!("{}: user {u:?}: {m}", ctx())))?
        }
        None => (0, 0),
    };

    let mut exec: Vec<String> = Vec::new();
    if !toolchain.is_host() {
        let qemu = which(&toolchain.qemu).ok_or_else(|| {
            Error::msg(format!(
                "{}: {} not found on PATH (apt-get install qemu-user-static)",
                ctx(),
                toolchain.qemu
            ))
        })?;
        // Whatever the image has there goes first: a copy never writes
        // through a symlink the image planted.
        let at = ImagePath::new(QEMU_IN_ROOTFS).map_err(Error::msg)?;
        tree.remove(&at).context_with(ctx)?;
        let inside = tree.host_path(&at);
        std::fs::copy(&qemu, &inside).with_path("copy qemu into", &inside)?;
        exec.push(QEMU_IN_ROOTFS.into());
        exec.push("-0".into());
        exec.push(argv[0].clone());
    }
    exec.push(program);
    exec.extend(argv[1..].iter().cloned());

    let workdir = c.working_dir.clone().unwrap_or_else(|| "/".into());
    let mut cmd = Command::new(&exec[0]);
    cmd.args(&exec[1..]).env_clear();
    for e in c.env.iter().chain(&opts.env) {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    let confine = Confine::new(&rootfs, &workdir, uid, gid)?;
    // SAFETY: the closure only makes async-signal-safe system calls on data
    // prepared before the fork.
    unsafe {
        cmd.pre_exec(move || confine.enter());
    }
    let status = cmd.status().map_err(|e| {
        Error::msg(format!(
            "{}: start {}: {}",
            ctx(),
            exec[0],
            crate::error::io_message(&e)
        ))
    })?;
    drop(tmp);
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The program's path inside the rootfs: as given when absolute, else the
/// first match on the image's PATH.
fn find_program(rootfs: &Path, name: &str, env: &[String]) -> std::result::Result<String, String> {
    let fs = HostFs::new(rootfs);
    let is_file = |p: &Path| {
        sysroot::resolve(&fs, p)
            .map(|r| matches!(r.node, Node::File { .. }))
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = Path::new("/").join(name);
        return if is_file(&p) {
            Ok(name.to_string())
        } else {
            Err(format!("{name} does not exist in the image"))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let p = Path::new(dir).join(name);
        if is_file(&p) {
            return Ok(p.to_string_lossy().into_owned());
        }
    }
    Err(format!("{name} is not on the image's PATH ({path})"))
}

/// "uid[:gid]" with numbers or names from the image's /etc/passwd and /etc/group.
/// The files are read through the image's own symlinks, never the host's.
fn user_ids(tree: &Tree, spec: &str) -> std::result::Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, Option<u32>)> {
        let text = read_image_file(tree, file)?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 || f[0] != name {
                return None;
            }
            Some((f[2].parse().ok()?, f.get(3).and_then(|g| g.parse().ok())))
        })
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup("/etc/passwd", user).ok_or("not in the image's /etc/passwd")?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup("/etc/group", g)
                    .ok_or("group not in the image's /etc/group")?
                    .0
            }
        },
        None => primary.unwrap_or(uid),
    };
    Ok((uid, gid))
}

/// The longest /etc/passwd or /etc/group read.
const MAX_ID_FILE: u64 = 16 << 20;

/// A regular file of the image, as text; None if it is missing or not a
/// regular file.
fn read_image_file(tree: &Tree, path: &str) -> Option<String> {
    let at = tree.resolve(&ImagePath::new(path).ok()?)?;
    match tree.get(&at)?.kind {
        EntryKind::File { .. } | EntryKind::HardLink { .. } => {}
        _ => return None,
    }
    let mut text = String::new();
    std::fs::File::open(tree.host_path(&at))
        .ok()?
        .take(MAX_ID_FILE)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Everything the child does between fork and exec, prepared in advance.
struct Confine {
    root: CString,
    /// Host directories bind-mounted into the rootfs (source, target), so
    /// the loader finds /proc/self/exe for $ORIGIN and programs find /dev.
    binds: Vec<(CString, CString)>,
    workdir: CString,
    uid: u32,
    gid: u32,
    /// Not root: map ourselves to root in a new user namespace.
    userns: Option<(CString, CString)>,
}

impl Confine {
    fn new(root: &Path, workdir: &str, uid: u32, gid: u32) -> Result<Confine> {
        let c = |b: &[u8]| CString::new(b).map_err(|_| Error::msg("run: path contains a NUL byte"));
        let euid = unsafe { libc::geteuid() };
        let egid = unsafe { libc::getegid() };
        let userns = (euid != 0).then(|| {
            (
                CString::new(format!("0 {euid} 1")).expect("no NUL"),
                CString::new(format!("0 {egid} 1")).expect("no NUL"),
            )
        });
        let mut binds = Vec::new();
        for dir in ["proc", "dev"] {
            let target = root.join(dir);
            // Only where the image leaves room: never over a file of its own.
            let free = match std::fs::symlink_metadata(&target) {
                Ok(m) => {
                    m.is_dir()
                        && std::fs::read_dir(&target)
                            .map(|mut d| d.next().is_none())
                            .unwrap_or(false)
                }
                Err(_) => std::fs::create_dir(&target).is_ok(),
            };
            if free {
                binds.push((
                    c(format!("/{dir}").as_bytes())?,
                    c(target.as_os_str().as_bytes())?,
                ));
            }
        }
        Ok(Confine {
            binds,
            root: c(root.as_os_str().as_bytes())?,
            workdir: c(workdir.as_bytes())?,
            uid,
            gid,
            userns,
        })
    }

    fn enter(&self) -> io::Result<()> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        unsafe {
            if let Some((uid_map, gid_map)) = &self.userns {
                check(libc::unshare(libc::CLONE_NEWUSER))?;
                write_proc(c"/proc/self/setgroups", c"deny")?;
                write_proc(c"/proc/self/uid_map", uid_map)?;
                write_proc(c"/proc/self/gid_map", gid_map)?;
            }
            // A private mount namespace: the bind mounts vanish with the process.
            if !self.binds.is_empty() && libc::unshare(libc::CLONE_NEWNS) == 0 {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                );
                for (src, target) in &self.binds {
                    // Best effort: a program that needs neither still runs.
                    libc::mount(
                        src.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    );
                }
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))?;
            if libc::chdir(self.workdir.as_ptr()) != 0 {
                check(libc::chdir(c"/".as_ptr()))?;
            }
            // In an unprivileged user namespace only root is mapped.
            if self.userns.is_none() {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(self.gid))?;
                check(libc::setuid(self.uid))?;
            }
        }
        Ok(())
    }
}

unsafe fn write_proc(path: &std::ffi::CStr, text: &std::ffi::CStr) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = text.to_bytes();
    let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    libc::close(fd);
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
