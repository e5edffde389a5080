//! The plan: every entry of one platform's image, keyed by its path in the
//! image (sorted, so parents come before children), each with its source and
//! normalized metadata. Built from the validated recipe and the closures; the
//! layer writer turns it into bytes without looking anything else up.

pub mod ldcache;
pub mod packages;
mod planner;
pub mod runtime;

pub use planner::{Planner, SPECIAL_MODE};

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::elf;
use crate::error::{Error, IoResultExt, Result};
use crate::loader::sysroot;
use crate::recipe::ImagePath;
use crate::recipe::SpecialKind;

/// Mode of directories the plan creates on its own, and of executables.
pub const DIR_MODE: u32 = 0o755;
pub const EXEC_MODE: u32 = 0o755;
pub const FILE_MODE: u32 = 0o644;

/// One entry of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub kind: ItemKind,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Why it is in the image ("[[binary]] #1 (/usr/bin/jq): libc.so.6 needed by ...").
    pub why: String,
    /// The recipe set the mode or kind explicitly (a `[[dir]]`), not implied.
    pub explicit: bool,
    /// A probe read the file's first bytes and they are not an ELF file's:
    /// nothing opens it again for ELF facts (the SBOM's Go build info).
    pub not_elf: bool,
}

impl Item {
    /// An entry owned by root (uid and gid 0), implied rather than declared.
    pub fn new(kind: ItemKind, mode: u32, why: impl Into<String>) -> Item {
        Item {
            kind,
            mode,
            uid: 0,
            gid: 0,
            why: why.into(),
            explicit: false,
            not_elf: false,
        }
    }

    /// A regular file copied from the host path `src`, mode 0644.
    pub fn file(src: PathBuf, size: u64, why: impl Into<String>) -> Item {
        Item::new(ItemKind::File { src, size }, FILE_MODE, why)
    }

    /// A regular file bareroot writes itself, mode 0644.
    pub fn data(bytes: impl Into<std::sync::Arc<[u8]>>, why: impl Into<String>) -> Item {
        Item::new(
            ItemKind::Data {
                bytes: bytes.into(),
            },
            FILE_MODE,
            why,
        )
    }

    /// A directory, mode 0755.
    pub fn dir(why: impl Into<String>) -> Item {
        Item::new(ItemKind::Dir, DIR_MODE, why)
    }

    /// A symbolic link to `target`, mode 0777.
    pub fn symlink(target: impl Into<String>, why: impl Into<String>) -> Item {
        Item::new(
            ItemKind::Symlink {
                target: target.into(),
            },
            0o777,
            why,
        )
    }

    /// The same entry owned by `uid` and `gid`.
    pub fn with_owner(self, uid: u32, gid: u32) -> Item {
        Item { uid, gid, ..self }
    }

    /// The same entry with these permission bits.
    pub fn with_mode(self, mode: u32) -> Item {
        Item { mode, ..self }
    }

    /// The same file, known from its first bytes not to be ELF.
    pub fn not_elf(self) -> Item {
        Item {
            not_elf: true,
            ..self
        }
    }

    /// The same entry, as declared: its mode and kind are the recipe's (or
    /// bareroot's own) choice, not implied.
    pub fn explicit(self) -> Item {
        Item {
            explicit: true,
            ..self
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Dir,
    /// A regular file copied from `src` (a host path), `size` bytes long.
    File {
        src: PathBuf,
        size: u64,
    },
    /// A regular file bareroot writes itself (/etc/passwd, package metadata).
    Data {
        bytes: std::sync::Arc<[u8]>,
    },
    Symlink {
        target: String,
    },
    /// A hard link to another entry of the image (`[[tree]]` inputs that
    /// are hard links of each other: the first in path order is the file).
    HardLink {
        target: ImagePath,
    },
    /// A FIFO or device node from a `[[tree]]` that declares it
    /// (`specials`): recorded, never opened.
    Special {
        kind: SpecialKind,
        major: u32,
        minor: u32,
    },
}

/// All entries of one image, sorted by path.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub entries: BTreeMap<ImagePath, Item>,
    /// Extended attributes a recipe entry asked to keep, by regular file:
    /// (name, value), sorted by name. Written as PAX `SCHILY.xattr.*`.
    pub xattrs: BTreeMap<ImagePath, Vec<(String, Vec<u8>)>>,
    /// The base image's filesystem under this plan's layer, if any: paths
    /// are resolved through its symlinks, and its directories are not
    /// written again.
    pub base: Option<std::sync::Arc<dyn Lower>>,
}

/// What a base image has at a path (the last component not followed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LowerKind {
    /// A directory, with its permission bits and owner.
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink(String),
    /// A regular file or hard link.
    File,
    /// A device node or FIFO.
    Other,
}

/// The filesystem of the image a build starts from, as the plan and the
/// planner see it.
pub trait Lower: Send + Sync + std::fmt::Debug {
    /// What is at `path`, its parents resolved as they are.
    fn lower(&self, path: &ImagePath) -> Option<LowerKind>;
    /// A regular file's bytes (symlinks followed inside the image), for
    /// files the image merges with its own (`/etc/passwd`).
    fn read(&self, path: &ImagePath) -> Option<Vec<u8>>;
    /// The host directory the base's files are unpacked in: a file found
    /// under it is the base's own.
    fn root(&self) -> &Path;
    /// The base as messages name it ("127.0.0.1:5000/debian:12@sha256:…").
    fn name(&self) -> &str;
    /// Every entry of the base as a plan item (regular files read from
    /// under [`Lower::root`]), with owners and modes as the base has them.
    fn items(&self) -> BTreeMap<ImagePath, Item>;
}

impl Plan {
    /// Follow symlinks already in the plan through the parents of `path`, as
    /// a filesystem would when the layer is unpacked; the last component is
    /// not followed. Creates nothing.
    fn resolve_parents(&self, path: &ImagePath) -> std::result::Result<ImagePath, String> {
        let mut hops = 0;
        let mut current = path.clone();
        'restart: loop {
            let comps: Vec<&str> = current.rel().split('/').collect();
            let mut prefix = String::new();
            for (i, c) in comps.iter().enumerate().take(comps.len() - 1) {
                prefix.push('/');
                prefix.push_str(c);
                let key = ImagePath::new(&prefix)?;
                let lower_link;
                let kind = match self.entries.get(&key).map(|e| &e.kind) {
                    Some(k) => Some(k),
                    None => match self.base.as_ref().and_then(|b| b.lower(&key)) {
                        Some(LowerKind::Symlink(t)) => {
                            lower_link = ItemKind::Symlink { target: t };
                            Some(&lower_link)
                        }
                        Some(LowerKind::File | LowerKind::Other) => {
                            return Err(format!("{key} is a file of the base, not a directory"));
                        }
                        _ => None,
                    },
                };
                match kind {
                    Some(ItemKind::Symlink { target }) => {
                        hops += 1;
                        if hops > sysroot::MAX_SYMLINK_HOPS {
                            return Err(format!("too many levels of symbolic links at {key}"));
                        }
                        let base = if target.starts_with('/') {
                            PathBuf::from(target)
                        } else {
                            key.as_path()
                                .parent()
                                .unwrap_or(Path::new("/"))
                                .join(target)
                        };
                        let rest = comps[i + 1..].join("/");
                        let joined = sysroot::normalize(&base.join(rest));
                        current = ImagePath::from_path(&joined)?;
                        continue 'restart;
                    }
                    Some(
                        ItemKind::File { .. } | ItemKind::Data { .. } | ItemKind::HardLink { .. },
                    ) => {
                        return Err(format!("{key} is a file, not a directory"));
                    }
                    _ => {}
                }
            }
            return Ok(current);
        }
    }

    /// Insert an entry, creating missing parent directories. Equal entries
    /// merge; conflicting ones are an error naming both reasons.
    pub fn insert(&mut self, path: &ImagePath, item: Item) -> std::result::Result<(), String> {
        // A parent that is a directory of the plan was resolved, and had
        // its own parents made, when it was put in (the entries of a tree
        // come after their directory): nothing to resolve or make.
        let parent_planned = path
            .parent()
            .and_then(|p| self.entries.get(&p))
            .is_some_and(|e| matches!(e.kind, ItemKind::Dir));
        let path = if parent_planned {
            path.clone()
        } else {
            self.resolve_parents(path)?
        };
        let mut parent = path.parent().filter(|_| !parent_planned);
        let mut parents = Vec::new();
        while let Some(p) = parent {
            parent = p.parent();
            parents.push(p);
        }
        for p in parents.into_iter().rev() {
            match self.entries.get(&p).map(|e| &e.kind) {
                None => {
                    // A directory the base has is written as the base has
                    // it, so the layer lists every parent of its entries.
                    let dir = match self.lower(&p) {
                        Some(LowerKind::Dir { mode, uid, gid }) => {
                            Item::dir("parent directory, as the base has it")
                                .with_mode(mode)
                                .with_owner(uid, gid)
                        }
                        Some(_) => {
                            return Err(format!(
                                "{p} is needed as a directory but the base has another kind of file there"
                            ))
                        }
                        None => Item::dir("parent directory"),
                    };
                    self.entries.insert(p, dir);
                }
                Some(ItemKind::Dir) => {}
                Some(_) => return Err(format!("{p} is needed as a directory but is not one")),
            }
        }
        let Some(old) = self.entries.get_mut(&path) else {
            let item = match (&item.kind, self.lower(&path)) {
                // A directory the base has keeps the base's mode and owner
                // unless the recipe sets its own.
                (ItemKind::Dir, Some(LowerKind::Dir { mode, uid, gid })) if !item.explicit => {
                    item.with_mode(mode).with_owner(uid, gid)
                }
                // The same symlink as the base's is not written again.
                (ItemKind::Symlink { target }, Some(LowerKind::Symlink(t)))
                    if same_target(&path, target, &t) =>
                {
                    return Ok(())
                }
                (ItemKind::Dir, Some(LowerKind::Symlink(t))) => {
                    return Err(format!(
                        "the base has a symlink there (to {t}), which a directory would \
                         replace; name the directory it points to"
                    ))
                }
                (kind, Some(LowerKind::Dir { .. })) if !matches!(kind, ItemKind::Dir) => {
                    return Err("the base has a directory there, which this would replace \
                         with everything in it; delete it first with [base] remove"
                        .to_string())
                }
                _ => item,
            };
            self.entries.insert(path, item);
            return Ok(());
        };
        let clash = |old: &Item, detail: &str| {
            Err(format!(
                "{path} is wanted twice{detail}: by {} and by {}",
                old.why, item.why
            ))
        };
        match (&old.kind, &item.kind) {
            (ItemKind::Dir, ItemKind::Dir) => {
                if item.explicit {
                    if old.explicit
                        && (old.mode, old.uid, old.gid) != (item.mode, item.uid, item.gid)
                    {
                        return clash(old, " with different modes");
                    }
                    *old = item;
                }
                Ok(())
            }
            (ItemKind::HardLink { target: a }, ItemKind::HardLink { target: b }) if a == b => {
                Ok(())
            }
            (ItemKind::Symlink { target: a }, ItemKind::Symlink { target: b }) => {
                if a == b {
                    Ok(())
                } else {
                    clash(old, " as symlinks to different targets")
                }
            }
            (
                a @ (ItemKind::File { .. } | ItemKind::Data { .. }),
                b @ (ItemKind::File { .. } | ItemKind::Data { .. }),
            ) => {
                if (old.mode, old.uid, old.gid) != (item.mode, item.uid, item.gid) {
                    return clash(old, " with different modes or owners");
                }
                match same_content(a, b) {
                    Ok(true) => Ok(()),
                    Ok(false) => clash(old, " with different content"),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => clash(old, " as different kinds of file"),
        }
    }

    /// What the base has at `path`, if there is a base.
    pub fn lower(&self, path: &ImagePath) -> Option<LowerKind> {
        self.base.as_ref().and_then(|b| b.lower(path))
    }

    /// Insert an entry the image needs only if the base lacks it (runtime
    /// files, package metadata): where the base has anything at the path,
    /// the base's stays.
    pub fn insert_implied(
        &mut self,
        path: &ImagePath,
        item: Item,
    ) -> std::result::Result<(), String> {
        if self.base.is_some() {
            let at = self.resolve_parents(path)?;
            if !self.entries.contains_key(&at) && self.lower(&at).is_some() {
                return Ok(());
            }
        }
        self.insert(path, item)
    }

    /// A plan listing what an unpacked tree holds (for explaining an image).
    pub fn from_tree(root: &Path, why: &str) -> Result<Plan> {
        let mut plan = Plan::default();
        for e in WalkDir::new(root).sort_by_file_name().min_depth(1) {
            let e = e.map_err(|e| Error::msg(format!("read {}: {e}", root.display())))?;
            let rel = e.path().strip_prefix(root).expect("under root");
            let Ok(at) = ImagePath::from_path(rel) else {
                continue;
            };
            let kind = if e.file_type().is_dir() {
                ItemKind::Dir
            } else if e.file_type().is_symlink() {
                let t = fs::read_link(e.path()).with_path("read link", e.path())?;
                ItemKind::Symlink {
                    target: t.to_string_lossy().into_owned(),
                }
            } else {
                ItemKind::File {
                    src: e.path().to_path_buf(),
                    size: e.metadata().map(|m| m.len()).unwrap_or(0),
                }
            };
            plan.entries.insert(at, Item::new(kind, 0, why));
        }
        Ok(plan)
    }

    /// The host files the image's regular files are read from, in image
    /// order.
    pub fn input_files(&self) -> impl Iterator<Item = &Path> {
        self.entries.values().filter_map(|e| match &e.kind {
            ItemKind::File { src, .. } => Some(src.as_path()),
            _ => None,
        })
    }

    /// Number of regular files and their total size.
    pub fn file_stats(&self) -> (usize, u64) {
        self.entries
            .values()
            .filter_map(|e| match &e.kind {
                ItemKind::File { size, .. } => Some(*size),
                ItemKind::Data { bytes } => Some(bytes.len() as u64),
                _ => None,
            })
            .fold((0, 0), |(n, s), size| (n + 1, s + size))
    }
}

/// Do symlinks at `at` to `a` and to `b` name the same path (one may be
/// absolute, the other relative)?
fn same_target(at: &ImagePath, a: &str, b: &str) -> bool {
    let dir = at.as_path().parent().unwrap_or(Path::new("/"));
    let full = |t: &str| sysroot::normalize(&dir.join(t));
    a == b || full(a) == full(b)
}

fn same_content(a: &ItemKind, b: &ItemKind) -> Result<bool> {
    match (a, b) {
        (ItemKind::File { src: a, .. }, ItemKind::File { src: b, .. }) => same_files(a, b),
        (ItemKind::Data { bytes: a }, ItemKind::Data { bytes: b }) => Ok(a == b),
        (ItemKind::File { src, .. }, ItemKind::Data { bytes })
        | (ItemKind::Data { bytes }, ItemKind::File { src, .. }) => {
            let meta = fs::metadata(src).with_path("stat", src)?;
            if meta.len() != bytes.len() as u64 {
                return Ok(false);
            }
            Ok(fs::read(src).with_path("read", src)?.as_slice() == &bytes[..])
        }
        _ => Ok(false),
    }
}

fn same_files(a: &Path, b: &Path) -> Result<bool> {
    if a == b {
        return Ok(true);
    }
    let (ma, mb) = (
        fs::metadata(a).with_path("stat", a)?,
        fs::metadata(b).with_path("stat", b)?,
    );
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let mut fa = fs::File::open(a).with_path("open", a)?;
    let mut fb = fs::File::open(b).with_path("open", b)?;
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = read_full(&mut fa, &mut ba).with_path("read", a)?;
        let m = read_full(&mut fb, &mut bb).with_path("read", b)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// Is this file an executable by its content: an ELF program or shared
/// object, or a `#!` script? (Input permission bits never decide a mode.)
pub fn is_executable_content(path: &Path) -> Result<bool> {
    let mut head = [0u8; 20];
    let mut f = fs::File::open(path).with_path("open", path)?;
    let n = read_full(&mut f, &mut head).with_path("read", path)?;
    Ok(classify(&head[..n]) != Content::Data)
}

/// What a file's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    /// An ELF program or shared object.
    ElfExecutable,
    /// A `#!` script.
    Script,
    /// Anything else (including ELF relocatable objects and core files).
    Data,
}

fn classify(head: &[u8]) -> Content {
    if head.starts_with(b"#!") {
        return Content::Script;
    }
    if head.len() >= 18 && elf::is_elf(head) {
        let e_type = if head[5] == 2 {
            u16::from_be_bytes([head[16], head[17]])
        } else {
            u16::from_le_bytes([head[16], head[17]])
        };
        if e_type == 2 || e_type == 3 {
            return Content::ElfExecutable;
        }
    }
    Content::Data
}

/// One regular file of a tree, looked at once: one open, one fstat, one
/// short read.
struct Probe {
    size: u64,
    content: Content,
    /// The first bytes are an ELF header's (of any ELF type).
    elf: bool,
    /// (device, inode) when the file has other hard links.
    linked: Option<(u64, u64)>,
}

fn probe(path: &Path) -> Result<Probe> {
    use crate::digest::{self, Head, Stamp};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let of = |m: &fs::Metadata, head: &[u8]| Probe {
        size: m.len(),
        content: classify(head),
        elf: crate::elf::is_elf(head),
        linked: (m.nlink() > 1).then(|| (m.dev(), m.ino())),
    };
    // A file the stat cache has seen at this stamp is told from the head
    // kept there, without opening it (the stamp's ctime also covers a
    // change of the link count).
    if digest::any_loaded() {
        if let Ok(m) = fs::symlink_metadata(path) {
            if let Some(head) = m.is_file().then(|| digest::known_head(path, &m)).flatten() {
                return Ok(of(&m, head.as_slice()));
            }
        }
    }
    // Non-blocking, so a file swapped for a FIFO since the walk cannot
    // hang the build; it is then refused.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_path("open", path)?;
    let m = f.metadata().with_path("stat", path)?;
    if !m.is_file() {
        return Err(Error::msg(format!(
            "read {}: no longer a regular file",
            path.display()
        )));
    }
    let mut head = [0u8; digest::HEAD_LEN];
    let n = read_full(&mut f, &mut head).with_path("read", path)?;
    digest::note_head(path, Stamp::of(&m), Head::new(&head[..n]));
    Ok(of(&m, &head[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(why: &str) -> Item {
        Item::file(PathBuf::from("/proc/self/exe"), 1, why)
            .with_mode(0o755)
            .explicit()
    }

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn parents_follow_symlinks_and_conflicts_are_named() {
        let mut plan = Plan::default();
        let link = Item::symlink("usr/lib", "link");
        plan.insert(&p("/lib"), link).unwrap();
        plan.insert(&p("/lib/x/a"), file("a")).unwrap();
        assert!(plan.entries.contains_key(&p("/usr/lib/x/a")));
        assert!(plan.entries.contains_key(&p("/usr")));
        assert!(!plan.entries.contains_key(&p("/lib/x")));
        // same source twice merges
        plan.insert(&p("/usr/lib/x/a"), file("b")).unwrap();
        let mut other = file("c");
        other.kind = ItemKind::Symlink { target: "y".into() };
        let err = plan.insert(&p("/usr/lib/x/a"), other).unwrap_err();
        assert!(
            err.contains("wanted twice") && err.contains("by a") && err.contains("by c"),
            "{err}"
        );
        let err = plan.insert(&p("/usr/lib/x/a/b"), file("d")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
    }
}
