//! The plan: every entry of one platform's image, keyed by its path in the
//! image (sorted, so parents come before children), each with its source and
//! normalized metadata. Built from the validated recipe and the closures; the
//! layer writer turns it into bytes without looking anything else up.

pub mod ldcache;
pub mod packages;
pub mod runtime;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::elf;
use crate::error::{Error, IoResultExt, Result};
use crate::loader::closure::{Resolver, Root, Side};
use crate::loader::sysroot::{self, Node};
use crate::platform::Platform;
use crate::recipe::SpecialKind;
use crate::recipe::{EntryKind, ImagePath, Recipe, Source, SrcSpec};
use crate::toolchain::Toolchain;

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

    /// The same entry with these permission bits.
    pub fn with_mode(self, mode: u32) -> Item {
        Item { mode, ..self }
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
                match self.entries.get(&key).map(|e| &e.kind) {
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
        let path = self.resolve_parents(path)?;
        let mut parent = path.parent();
        let mut parents = Vec::new();
        while let Some(p) = parent {
            parent = p.parent();
            parents.push(p);
        }
        for p in parents.into_iter().rev() {
            match self.entries.get(&p).map(|e| &e.kind) {
                None => {
                    self.entries.insert(
                        p,
                        Item {
                            kind: ItemKind::Dir,
                            mode: DIR_MODE,
                            uid: 0,
                            gid: 0,
                            why: "parent directory".into(),
                            explicit: false,
                        },
                    );
                }
                Some(ItemKind::Dir) => {}
                Some(_) => return Err(format!("{p} is needed as a directory but is not one")),
            }
        }
        let Some(old) = self.entries.get_mut(&path) else {
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
            plan.entries.insert(
                at,
                Item {
                    kind,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    why: why.to_string(),
                    explicit: false,
                },
            );
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
    /// (device, inode) when the file has other hard links.
    linked: Option<(u64, u64)>,
}

fn probe(path: &Path) -> Result<Probe> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    let mut head = [0u8; 20];
    let n = read_full(&mut f, &mut head).with_path("read", path)?;
    Ok(Probe {
        size: m.len(),
        content: classify(&head[..n]),
        linked: (m.nlink() > 1).then(|| (m.dev(), m.ino())),
    })
}

/// What a `[[tree]]` leaves out and which special files it keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TreeRules<'a> {
    /// Glob patterns of paths to leave out.
    pub exclude: &'a [String],
    /// The special files the tree may hold.
    pub specials: &'a [SpecialKind],
}

/// The mode of a FIFO or device node a tree keeps: readable and writable
/// by all, as /dev/null is (the input's bits are never used).
pub const SPECIAL_MODE: u32 = 0o666;

/// Builds one platform's plan from a recipe.
pub struct Planner<'a> {
    pub recipe: &'a Recipe,
    pub platform: &'a Platform,
    pub toolchain: &'a Toolchain,
    pub resolver: &'a Resolver<'a>,
    /// Where the sysroot came from, or why there is none, for messages.
    pub sysroot: String,
    plan: Plan,
    /// Data files taken from the sysroot with their symlinks (zoneinfo,
    /// gconv configuration): path → why.
    pub(crate) data_files: std::cell::RefCell<BTreeMap<PathBuf, String>>,
    /// Every closure found, for the symbol-version check.
    pub(crate) closures: std::cell::RefCell<Vec<crate::loader::symbols::Checked>>,
}

impl<'a> Planner<'a> {
    pub fn new(
        recipe: &'a Recipe,
        platform: &'a Platform,
        toolchain: &'a Toolchain,
        resolver: &'a Resolver<'a>,
    ) -> Planner<'a> {
        Planner {
            closures: Default::default(),
            data_files: Default::default(),
            sysroot: String::new(),
            recipe,
            platform,
            toolchain,
            resolver,
            plan: Plan::default(),
        }
    }

    pub(crate) fn plan_ref(&self) -> &Plan {
        &self.plan
    }

    pub(crate) fn plan_mut(&mut self) -> &mut Plan {
        &mut self.plan
    }

    /// Name the sysroot (or say why there is none) in messages about it.
    pub fn with_sysroot(mut self, description: String) -> Planner<'a> {
        self.sysroot = description;
        self
    }

    /// Lay out every entry. Libraries and interpreters come first, so that
    /// the sysroot's own directory symlinks (`/lib -> usr/lib`) are in place
    /// before recipe paths are resolved through them.
    pub fn plan(self) -> Result<Plan> {
        self.plan_with_closures().map(|(plan, _)| plan)
    }

    /// [`Planner::plan`], also returning every closure it found.
    pub fn plan_with_closures(mut self) -> Result<(Plan, Vec<crate::loader::symbols::Checked>)> {
        let mut deps: BTreeMap<(PathBuf, Side, PathBuf), String> = BTreeMap::new();
        let mut later: Vec<(ImagePath, Item, String)> = Vec::new();
        let mut xattrs: BTreeMap<ImagePath, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for entry in &self.recipe.entries {
            let fail = |m: String| Error::msg(format!("{}: {m}", entry.label));
            let start = later.len();
            match &entry.kind {
                EntryKind::Binary {
                    src,
                    dest,
                    mode,
                    owner,
                } => {
                    let (side, path, host) = self.source(src).map_err(fail)?;
                    let bytes_ok = self
                        .resolver
                        .parse(side, &self.real(side, &path).map_err(fail)?);
                    let info =
                        bytes_ok.map_err(|m| fail(format!("read {}: {m}", host.display())))?;
                    if !matches!(
                        info.kind,
                        elf::ElfKind::Executable | elf::ElfKind::SharedObject
                    ) {
                        return Err(fail(format!(
                            "{} is not an executable ELF file",
                            host.display()
                        )));
                    }
                    self.toolchain
                        .check(&info)
                        .map_err(|m| fail(format!("{} {m}", host.display())))?;
                    let size = file_size(&host).map_err(fail)?;
                    let kind = ItemKind::File {
                        src: host.clone(),
                        size,
                    };
                    let item = recipe_item(kind, mode.unwrap_or(EXEC_MODE), *owner, &entry.label);
                    later.push((dest.clone(), item, entry.label.clone()));
                    self.collect(&entry.label, side, &path, dest, &mut deps)?;
                }
                EntryKind::File {
                    src,
                    dest,
                    mode,
                    owner,
                } => {
                    let (side, path, host) = self.source(src).map_err(fail)?;
                    let size = file_size(&host).map_err(fail)?;
                    // Any ELF object in the image must be the platform's.
                    if is_elf_file(&host)? {
                        let real = self.real(side, &path).map_err(fail)?;
                        if let Ok(info) = self.resolver.parse(side, &real) {
                            if matches!(
                                info.kind,
                                elf::ElfKind::Executable | elf::ElfKind::SharedObject
                            ) {
                                self.toolchain
                                    .check(&info)
                                    .map_err(|m| fail(format!("{} {m}", host.display())))?;
                            }
                        }
                    }
                    let mode = match mode {
                        Some(m) => *m,
                        None => default_mode(&host)?,
                    };
                    let item = recipe_item(
                        ItemKind::File { src: host, size },
                        mode,
                        *owner,
                        &entry.label,
                    );
                    later.push((dest.clone(), item, entry.label.clone()));
                }
                EntryKind::Tree {
                    src,
                    dest,
                    owner,
                    exclude,
                    specials,
                } => {
                    let (side, path, host) = self.source_any(src).map_err(fail)?;
                    let start = later.len();
                    self.tree_excluding(
                        &entry.label,
                        side,
                        &path,
                        &host,
                        dest,
                        TreeRules { exclude, specials },
                        &mut deps,
                        &mut later,
                    )?;
                    if let Some(o) = owner {
                        for (_, item, _) in &mut later[start..] {
                            item.uid = o.uid;
                            item.gid = o.gid;
                        }
                    }
                }
                EntryKind::Dir { dest, mode, owner } => {
                    let item = recipe_item(
                        ItemKind::Dir,
                        mode.unwrap_or(DIR_MODE),
                        *owner,
                        &entry.label,
                    );
                    later.push((dest.clone(), item, entry.label.clone()));
                }
                EntryKind::Library { name } => {
                    self.library(&entry.label, name, true, &mut deps)?;
                }
                EntryKind::Symlink { dest, target } => later.push((
                    dest.clone(),
                    Item {
                        kind: ItemKind::Symlink {
                            target: target.clone(),
                        },
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                        why: entry.label.clone(),
                        explicit: true,
                    },
                    entry.label.clone(),
                )),
            }
            if !entry.xattrs.is_empty() {
                for (dest, item, _) in &later[start..] {
                    if let ItemKind::File { src, .. } = &item.kind {
                        let found = read_xattrs(src, &entry.xattrs).map_err(&fail)?;
                        if !found.is_empty() {
                            xattrs.insert(dest.clone(), found);
                        }
                    }
                }
            }
        }
        self.add_runtime(&mut deps, &mut later)?;
        for ((image, side, path), why) in &deps {
            self.materialize(*side, path, image, why, EXEC_MODE)?;
        }
        let data = std::mem::take(&mut *self.data_files.borrow_mut());
        for (path, why) in &data {
            self.materialize(Side::Sysroot, path, path, why, FILE_MODE)?;
        }
        for (dest, item, label) in later {
            self.plan
                .insert(&dest, item)
                .map_err(|m| Error::msg(format!("{label}: place {dest}: {m}")))?;
        }
        for (path, found) in xattrs {
            if let Some(ItemKind::File { .. }) = self.plan.entries.get(&path).map(|i| &i.kind) {
                self.plan.xattrs.insert(path, found);
            }
        }
        self.add_ld_so_cache()?;
        crate::loader::symbols::check(self.resolver, &self.closures.borrow())
            .map_err(|m| Error::msg(format!("check symbol versions for {}: {m}", self.platform)))?;
        Ok((self.plan, self.closures.into_inner()))
    }

    /// A library by soname (found as dlopen from a plain library would find
    /// it) or by absolute path, with its closure. `required`: not finding it
    /// is an error; else it is left out.
    pub(crate) fn library(
        &self,
        label: &str,
        name: &str,
        required: bool,
        deps: &mut BTreeMap<(PathBuf, Side, PathBuf), String>,
    ) -> Result<bool> {
        let found = self
            .resolver
            .find_library(name, self.toolchain.class, self.toolchain.machine);
        let Some(path) = found else {
            if required {
                return Err(Error::msg(format!(
                    "{label}: resolve {name}: not found for {} in {}",
                    self.toolchain.platform, self.sysroot
                )));
            }
            return Ok(false);
        };
        let image = sysroot::normalize(&path);
        deps.entry((image.clone(), Side::Sysroot, path.clone()))
            .or_insert_with(|| label.to_string());
        let dest = ImagePath::from_path(&image).map_err(|m| Error::msg(format!("{label}: {m}")))?;
        self.collect(label, Side::Sysroot, &path, &dest, deps)?;
        Ok(true)
    }

    /// Resolve a recipe source to (side, path in that side's tree, real host path of a regular file).
    pub(crate) fn source(
        &self,
        src: &SrcSpec,
    ) -> std::result::Result<(Side, PathBuf, PathBuf), String> {
        let (side, path, host) = self.source_any(src)?;
        let r = sysroot::resolve(self.resolver.fs(side), &path).map_err(|e| {
            let where_ = match side {
                Side::Sysroot => format!(" ({} in {})", path.display(), self.sysroot),
                Side::Host => String::new(),
            };
            format!(
                "read {}: {}{where_}",
                host.display(),
                crate::error::io_message(&e)
            )
        })?;
        match r.node {
            Node::File { .. } => Ok((side, path, self.resolver.fs(side).host_path(&r.real))),
            Node::Dir => Err(format!("{} is a directory (use [[tree]])", host.display())),
            _ => Err(format!("{} is not a regular file", host.display())),
        }
    }

    pub(crate) fn source_any(
        &self,
        src: &SrcSpec,
    ) -> std::result::Result<(Side, PathBuf, PathBuf), String> {
        let src = src.resolve(self.platform, &self.toolchain.triplet, &self.recipe.base)?;
        let (side, path) = match src {
            Source::Sysroot(p) => (Side::Sysroot, p),
            Source::Host(p) => (
                Side::Host,
                std::path::absolute(&p).map_err(|e| format!("resolve {}: {e}", p.display()))?,
            ),
        };
        let host = self.resolver.fs(side).host_path(&path);
        Ok((side, path, host))
    }

    pub(crate) fn real(&self, side: Side, path: &Path) -> std::result::Result<PathBuf, String> {
        sysroot::resolve(self.resolver.fs(side), path)
            .map(|r| r.real)
            .map_err(|e| format!("read {}: {}", path.display(), crate::error::io_message(&e)))
    }

    /// Find the closure of one object and remember every file it needs.
    pub(crate) fn collect(
        &self,
        label: &str,
        side: Side,
        path: &Path,
        dest: &ImagePath,
        deps: &mut BTreeMap<(PathBuf, Side, PathBuf), String>,
    ) -> Result<()> {
        let root = Root {
            side,
            path: path.to_path_buf(),
            image_path: dest.as_path().to_path_buf(),
        };
        let closure = self
            .resolver
            .closure(&root)
            .map_err(|m| Error::msg(format!("{label}: analyze {}: {m}", path.display())))?;
        if let Some(m) = closure.missing.first() {
            return Err(Error::msg(format!(
                "{label}: resolve {} needed by {}: not found for {} in {}",
                m.name,
                m.needed_by.display(),
                self.toolchain.platform,
                self.sysroot
            )));
        }
        self.closures
            .borrow_mut()
            .push(crate::loader::symbols::Checked {
                label: label.to_string(),
                root_side: side,
                root: path.to_path_buf(),
                closure: closure.clone(),
            });
        for dep in closure.interpreter.iter().chain(&closure.libraries) {
            let why = format!(
                "{label}: {} needed by {} ({})",
                dep.name,
                dep.needed_by.display(),
                dep.via.as_str()
            );
            deps.entry((dep.image_path.clone(), dep.side, dep.path.clone()))
                .or_insert(why);
        }
        Ok(())
    }

    /// Put a file the loader opens into the image under the path it opens,
    /// with every symlink on the way (made relative) and the real file.
    pub(crate) fn materialize(
        &mut self,
        side: Side,
        path: &Path,
        image: &Path,
        why: &str,
        mode: u32,
    ) -> Result<()> {
        let fs = self.resolver.fs(side);
        let fail = |m: String| Error::msg(format!("{why}: place {}: {m}", image.display()));
        let r = sysroot::resolve(fs, path).map_err(|e| fail(crate::error::io_message(&e)))?;
        let relocated = side == Side::Host || sysroot::normalize(path) != image;
        let file_at = if relocated {
            image.to_path_buf()
        } else {
            r.real.clone()
        };
        let host = fs.host_path(&r.real);
        let size = file_size(&host).map_err(fail)?;
        if !relocated {
            for link in &r.links {
                let target = if link.target.is_absolute() {
                    let dir = link.at.parent().unwrap_or(Path::new("/"));
                    sysroot::relative(dir, &sysroot::normalize(&link.target))
                } else {
                    link.target.clone()
                };
                let at = ImagePath::from_path(&link.at).map_err(fail)?;
                let item = Item {
                    kind: ItemKind::Symlink {
                        target: target.to_string_lossy().into_owned(),
                    },
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    why: why.to_string(),
                    explicit: false,
                };
                self.plan.insert(&at, item).map_err(fail)?;
            }
        }
        let at = ImagePath::from_path(&file_at).map_err(fail)?;
        let item = Item {
            kind: ItemKind::File { src: host, size },
            mode,
            uid: 0,
            gid: 0,
            why: why.to_string(),
            explicit: false,
        };
        self.plan.insert(&at, item).map_err(fail)
    }

    /// Copy a directory tree; every ELF object inside brings its closure.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tree(
        &self,
        label: &str,
        side: Side,
        path: &Path,
        host: &Path,
        dest: &ImagePath,
        deps: &mut BTreeMap<(PathBuf, Side, PathBuf), String>,
        later: &mut Vec<(ImagePath, Item, String)>,
    ) -> Result<()> {
        self.tree_excluding(
            label,
            side,
            path,
            host,
            dest,
            TreeRules::default(),
            deps,
            later,
        )
    }

    /// [`Planner::tree`] leaving out what `exclude` matches.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tree_excluding(
        &self,
        label: &str,
        side: Side,
        path: &Path,
        host: &Path,
        dest: &ImagePath,
        rules: TreeRules,
        deps: &mut BTreeMap<(PathBuf, Side, PathBuf), String>,
        later: &mut Vec<(ImagePath, Item, String)>,
    ) -> Result<()> {
        let TreeRules { exclude, specials } = rules;
        let fail = |m: String| Error::msg(format!("{label}: {m}"));
        let r = sysroot::resolve(self.resolver.fs(side), path).map_err(|e| {
            fail(format!(
                "read {}: {}",
                host.display(),
                crate::error::io_message(&e)
            ))
        })?;
        if r.node != Node::Dir {
            return Err(fail(format!("{} is not a directory", host.display())));
        }
        let root_host = self.resolver.fs(side).host_path(&r.real);
        let excluded = |e: &walkdir::DirEntry| -> bool {
            let rel = e.path().strip_prefix(&root_host).unwrap_or(e.path());
            let rel = rel.to_string_lossy();
            let name = e.file_name().to_string_lossy();
            !rel.is_empty()
                && exclude.iter().any(|x| {
                    if x.contains('/') {
                        crate::loader::closure::wildmatch(
                            x.trim_start_matches('/').as_bytes(),
                            rel.as_bytes(),
                        )
                    } else {
                        crate::loader::closure::wildmatch(x.as_bytes(), name.as_bytes())
                    }
                })
        };
        // Hard-linked inputs: (device, inode) → indexes into `later`.
        let mut links: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
        let walker = WalkDir::new(&root_host)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| !excluded(e));
        let mut entries = Vec::new();
        for entry in walker {
            entries.push(entry.map_err(|e| {
                let p = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                fail(format!(
                    "read {p}: {}",
                    e.io_error()
                        .map(crate::error::io_message)
                        .unwrap_or_else(|| e.to_string())
                ))
            })?);
        }
        // Every regular file probed in parallel; used in order below, so
        // the first failure in image order is the one reported.
        let probes: Vec<Option<Result<Probe>>> = {
            use rayon::prelude::*;
            entries
                .par_iter()
                .map(|e| e.file_type().is_file().then(|| probe(e.path())))
                .collect()
        };
        for (entry, probed) in entries.iter().zip(probes) {
            let rel = entry
                .path()
                .strip_prefix(&root_host)
                .expect("walkdir yields paths under its root");
            let rel_str = rel.to_str().ok_or_else(|| {
                fail(format!(
                    "{}: file name is not valid UTF-8",
                    entry.path().display()
                ))
            })?;
            let at = if rel_str.is_empty() {
                dest.clone()
            } else {
                dest.join(rel_str)
                    .map_err(|m| fail(format!("{}: {m}", entry.path().display())))?
            };
            let t = entry.file_type();
            let why = format!("{label}: {}", entry.path().display());
            let item = if t.is_dir() {
                Item {
                    kind: ItemKind::Dir,
                    mode: DIR_MODE,
                    uid: 0,
                    gid: 0,
                    why,
                    explicit: false,
                }
            } else if t.is_symlink() {
                let target = fs::read_link(entry.path()).with_path("read link", entry.path())?;
                Item {
                    kind: ItemKind::Symlink {
                        target: target.to_string_lossy().into_owned(),
                    },
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    why,
                    explicit: false,
                }
            } else if let Some(probed) = probed {
                let p = probed?;
                let host_file = entry.path().to_path_buf();
                if p.content == Content::ElfExecutable {
                    let src_path = r.real.join(rel);
                    let info = self
                        .resolver
                        .parse(side, &src_path)
                        .map_err(|m| fail(format!("read {}: {m}", host_file.display())))?;
                    self.toolchain
                        .check(&info)
                        .map_err(|m| fail(format!("{} {m}", host_file.display())))?;
                    if info.dynamic {
                        self.collect(label, side, &src_path, &at, deps)?;
                    }
                }
                if let Some(id) = p.linked {
                    links.entry(id).or_default().push(later.len());
                }
                Item {
                    kind: ItemKind::File {
                        src: host_file,
                        size: p.size,
                    },
                    mode: if p.content == Content::Data {
                        FILE_MODE
                    } else {
                        EXEC_MODE
                    },
                    uid: 0,
                    gid: 0,
                    why,
                    explicit: false,
                }
            } else {
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let kind = if t.is_fifo() {
                    Some(SpecialKind::Fifo)
                } else if t.is_char_device() {
                    Some(SpecialKind::CharDevice)
                } else if t.is_block_device() {
                    Some(SpecialKind::BlockDevice)
                } else {
                    None
                };
                let Some(kind) = kind.filter(|k| specials.contains(k)) else {
                    return Err(fail(format!(
                        "{}: is a {}, which a tree holds only when its `specials` names it{}",
                        entry.path().display(),
                        kind.map_or("socket", |k| match k {
                            SpecialKind::Fifo => "FIFO",
                            SpecialKind::CharDevice => "character device",
                            SpecialKind::BlockDevice => "block device",
                        }),
                        if kind.is_none() {
                            " (and a socket never: a layer cannot hold one)"
                        } else {
                            ""
                        }
                    )));
                };
                // Recorded from the directory entry: never opened.
                let rdev = entry
                    .metadata()
                    .map_err(|e| fail(format!("stat {}: {e}", entry.path().display())))?
                    .rdev();
                Item {
                    kind: ItemKind::Special {
                        kind,
                        major: libc::major(rdev),
                        minor: libc::minor(rdev),
                    },
                    mode: SPECIAL_MODE,
                    uid: 0,
                    gid: 0,
                    why,
                    explicit: false,
                }
            };
            later.push((at, item, label.to_string()));
        }
        // Within a group of hard links, the first path in image order (the
        // layer's order) carries the bytes; the others become link entries.
        for group in links.values().filter(|g| g.len() > 1) {
            let mut group = group.clone();
            group.sort_by(|a, b| later[*a].0.cmp(&later[*b].0));
            let first = later[group[0]].0.clone();
            for &i in &group[1..] {
                later[i].1.kind = ItemKind::HardLink {
                    target: first.clone(),
                };
            }
        }
        Ok(())
    }
}

/// An entry a recipe names: its mode and owner as the recipe says.
fn recipe_item(
    kind: ItemKind,
    mode: u32,
    owner: Option<crate::recipe::Owner>,
    label: &str,
) -> Item {
    Item {
        kind,
        mode,
        uid: owner.map_or(0, |o| o.uid),
        gid: owner.map_or(0, |o| o.gid),
        why: label.to_string(),
        explicit: true,
    }
}

fn is_elf_file(path: &Path) -> Result<bool> {
    let mut head = [0u8; 4];
    let mut f = fs::File::open(path).with_path("open", path)?;
    let n = read_full(&mut f, &mut head).with_path("read", path)?;
    Ok(elf::is_elf(&head[..n]))
}

/// The named extended attributes `path` has (not following a symlink),
/// sorted by name; those it lacks are left out.
fn read_xattrs(
    path: &Path,
    names: &[String],
) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    use std::os::unix::ffi::OsStrExt;
    let fail = |what: &str, e: std::io::Error| {
        format!(
            "read {what} of {}: {}",
            path.display(),
            crate::error::io_message(&e)
        )
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: NUL in path", path.display()))?;
    let mut out = Vec::new();
    for name in names {
        let c_name = std::ffi::CString::new(name.as_bytes()).map_err(|_| format!("{name}: NUL"))?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: valid NUL-terminated strings and a buffer of buf.len() bytes.
            let n = unsafe {
                libc::lgetxattr(
                    c_path.as_ptr(),
                    c_name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                out.push((name.clone(), buf));
                break;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENODATA) | Some(libc::ENOTSUP) => break,
                Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
                _ => return Err(fail(name, e)),
            }
        }
    }
    Ok(out)
}

fn default_mode(path: &Path) -> Result<u32> {
    Ok(if is_executable_content(path)? {
        EXEC_MODE
    } else {
        FILE_MODE
    })
}

fn file_size(path: &Path) -> std::result::Result<u64, String> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("stat {}: {}", path.display(), crate::error::io_message(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(why: &str) -> Item {
        Item {
            kind: ItemKind::File {
                src: PathBuf::from("/proc/self/exe"),
                size: 1,
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
            why: why.into(),
            explicit: true,
        }
    }

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn parents_follow_symlinks_and_conflicts_are_named() {
        let mut plan = Plan::default();
        let link = Item {
            kind: ItemKind::Symlink {
                target: "usr/lib".into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            why: "link".into(),
            explicit: false,
        };
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
