//! The loader emulation: paths inside a sysroot (`sysroot`), the closure a
//! dynamic loader would open (`closure`), the offline symbol-version check
//! (`symbols`), and the fuzz harness that runs untrusted bytes through them
//! (`harness`).
//!
//! [`Loader::open`] is the one place a resolver's inputs are put together:
//! the platform's sysroot, the host (where relative recipe paths live) and
//! the toolchain's loader configuration.

pub mod closure;
pub mod harness;
pub mod symbols;
pub mod sysroot;

use std::path::{Path, PathBuf};

use crate::elf::DlopenPriority;
use crate::error::{Error, Result};
use crate::toolchain::Toolchain;

use closure::{LoaderConfig, Resolver};
use sysroot::{Fs, HidingFs, HostFs, MemFs, UnionFs};

/// A platform's filesystems and loader settings; [`Loader::resolver`] finds
/// closures in them.
pub struct Loader {
    sysroot: Box<dyn Fs>,
    host: HostFs,
    config: LoaderConfig,
    /// The sysroot's name ("/", a directory, the cross tree).
    name: String,
    /// The sysroot as messages name it: "sysroot NAME", or why there is
    /// none.
    description: String,
}

impl Loader {
    /// The sysroot `given`, else the platform's default one
    /// ([`open_sysroot`]); an error when there is none.
    pub fn open(toolchain: &Toolchain, given: Option<&Path>) -> Result<Loader> {
        let (sysroot, name) = open_sysroot(toolchain, given)?;
        Ok(Loader::new(toolchain, sysroot, name))
    }

    /// For a build: like [`Loader::open`], but a platform without a default
    /// sysroot can still take static binaries; the reason there is none is
    /// given if a lookup needs one. A sysroot the user named must exist.
    pub fn for_build(toolchain: &Toolchain, given: Option<&Path>) -> Result<Loader> {
        match open_sysroot(toolchain, given) {
            Ok((sysroot, name)) => Ok(Loader::new(toolchain, sysroot, name)),
            Err(e) if given.is_some() => Err(e),
            Err(e) => {
                let mut l = Loader::new(toolchain, Box::new(MemFs::new()), String::new());
                l.description = format!("no sysroot ({e})");
                Ok(l)
            }
        }
    }

    /// An unpacked image's rootfs as the sysroot (`why` on a layout).
    pub fn of_rootfs(toolchain: &Toolchain, rootfs: &Path) -> Loader {
        Loader::new(
            toolchain,
            Box::new(HostFs::new(rootfs)),
            rootfs.display().to_string(),
        )
    }

    fn new(toolchain: &Toolchain, sysroot: Box<dyn Fs>, name: String) -> Loader {
        Loader {
            sysroot,
            host: HostFs::new("/"),
            config: loader_config(toolchain),
            description: format!("sysroot {name}"),
            name,
        }
    }

    /// Resolve against a base image's unpacked filesystem too, as the image
    /// will be: where both have a path, the base's wins when `base_first`
    /// (`[base] libraries = "base"`), else the sysroot's (ours is copied
    /// over it). The base's `/etc/ld.so.conf` then decides the search.
    /// `hidden`: the base's paths `[base] remove` takes out (still on disk).
    pub fn on_base(mut self, base: Option<(&Path, Vec<PathBuf>, &str, bool)>) -> Loader {
        let Some((root, hidden, name, base_first)) = base else {
            return self;
        };
        let sysroot = std::mem::replace(&mut self.sysroot, Box::new(MemFs::new()));
        let base = HidingFs::new(HostFs::new(root), hidden);
        let union = if base_first {
            UnionFs::new().layer(base, None).boxed_layer(sysroot, None)
        } else {
            UnionFs::new().boxed_layer(sysroot, None).layer(base, None)
        };
        self.sysroot = Box::new(union);
        self.description = format!("{} on base {name}", self.description);
        self
    }

    /// Follow `.note.dlopen` entries up to this priority (None: ignore
    /// them); the default is the recommended ones.
    pub fn with_dlopen(mut self, dlopen: Option<DlopenPriority>) -> Loader {
        self.config.dlopen = dlopen;
        self
    }

    /// A resolver over these filesystems (its parse and lookup memos live as
    /// long as it does).
    pub fn resolver(&self) -> Resolver<'_> {
        Resolver::new(self.sysroot.as_ref(), &self.host, self.config.clone())
    }

    /// The sysroot's name, e.g. "/" or "/usr/aarch64-linux-gnu + …".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// "sysroot NAME", or "no sysroot (why)".
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// What the resolver needs to know about a platform's loader.
pub fn loader_config(t: &Toolchain) -> LoaderConfig {
    LoaderConfig {
        default_dirs: t.default_dirs.iter().map(PathBuf::from).collect(),
        lib: format!("lib/{}", t.triplet),
        platform: t.at_platform.clone(),
        flags_mask: t.flags_mask,
        flags: t.flags,
        dlopen: Some(DlopenPriority::Recommended),
    }
}

/// Open the sysroot for a platform: the directory given, else "/" for the
/// host's own platform, else Debian's cross tree over the host's multiarch
/// directories for that platform.
fn open_sysroot(toolchain: &Toolchain, given: Option<&Path>) -> Result<(Box<dyn Fs>, String)> {
    if let Some(dir) = given {
        let m = std::fs::metadata(dir).map_err(|e| Error::io("open sysroot", dir, e))?;
        if !m.is_dir() {
            return Err(Error::msg(format!(
                "open sysroot {}: not a directory",
                dir.display()
            )));
        }
        return Ok((Box::new(HostFs::new(dir)), dir.display().to_string()));
    }
    if toolchain.is_host() {
        return Ok((Box::new(HostFs::new("/")), "/".into()));
    }
    let multiarch = vec![
        PathBuf::from(format!("/lib/{}", toolchain.triplet)),
        PathBuf::from(format!("/usr/lib/{}", toolchain.triplet)),
    ];
    let cross = &toolchain.cross_sysroot;
    let have_cross = cross.is_dir();
    let have_multiarch = multiarch.iter().any(|d| d.is_dir());
    if !have_cross && !have_multiarch {
        return Err(Error::msg(format!(
            "open sysroot for {}: neither {} (Debian's libc6-dev-<arch>-cross) nor /usr/lib/{} \
             (dpkg --add-architecture) exists; install one or pass --sysroot {}=DIR",
            toolchain.platform,
            cross.display(),
            toolchain.triplet,
            toolchain.platform
        )));
    }
    let union = UnionFs::new()
        .layer(HostFs::new(cross), None)
        .layer(HostFs::new("/"), Some(multiarch));
    let name = format!(
        "{} + /usr/lib/{} (multiarch)",
        cross.display(),
        toolchain.triplet
    );
    Ok((Box::new(union), name))
}
