//! The planner: one platform's plan from a recipe. Each entry is laid out
//! (programs and libraries with their closures, files, trees, directories,
//! symlinks), then the distroless runtime files (`runtime.rs`), then every
//! closure's files are materialized through the sysroot's own symlinks,
//! `ld.so.cache` is generated and the symbol versions are checked.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

// The plan's types and the file probes the planner shares with Plan.
use super::*;
use crate::elf;
use crate::error::{Error, IoResultExt, Result};
use crate::loader::closure::{Resolver, Root, Side};
use crate::loader::sysroot::{self, Node};
use crate::platform::Platform;
use crate::recipe::SpecialKind;
use crate::recipe::{Entry, EntryKind, ImagePath, Owner, Recipe, Source, SrcSpec};
use crate::toolchain::Toolchain;

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

/// What the planner has laid out before it places it, by kind.
#[derive(Default)]
struct Laid {
    /// Closure files: (image path, side, path there) → why.
    deps: BTreeMap<(PathBuf, Side, PathBuf), String>,
    /// Recipe items: (destination, item, the entry's label).
    later: Vec<(ImagePath, Item, String)>,
    /// Runtime files the image needs only where a base lacks them.
    implied: Vec<(ImagePath, Item, String)>,
    /// Extended attributes of recipe files, by destination.
    xattrs: BTreeMap<ImagePath, Vec<(String, Vec<u8>)>>,
}

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

    /// Build on a base image's filesystem: see [`Plan::base`].
    pub fn with_base(mut self, base: Option<std::sync::Arc<dyn Lower>>) -> Planner<'a> {
        self.plan.base = base;
        self
    }

    /// Name the sysroot (or say why there is none) in messages about it.
    pub fn with_sysroot(mut self, description: String) -> Planner<'a> {
        self.sysroot = description;
        self
    }

    /// Lay out every entry, then place what was laid out: closure files
    /// and interpreters first, so that the sysroot's own directory symlinks
    /// (`/lib -> usr/lib`) are in place before recipe paths are resolved
    /// through them. Returns the plan and every closure found.
    pub fn plan_with_closures(mut self) -> Result<(Plan, Vec<crate::loader::symbols::Checked>)> {
        let mut laid = Laid::default();
        for entry in &self.recipe.entries {
            self.lay_out(entry, &mut laid)?;
        }
        self.add_runtime(&mut laid.deps, &mut laid.later, &mut laid.implied)?;
        self.place(laid)?;
        self.add_ld_so_cache()?;
        let on_base = match &self.plan.base {
            Some(b) => format!(" on base {}", b.name()),
            None => String::new(),
        };
        crate::loader::symbols::check(self.resolver, &self.closures.borrow()).map_err(|m| {
            Error::msg(format!(
                "check symbol versions for {}{on_base}: {m}",
                self.platform
            ))
        })?;
        Ok((self.plan, self.closures.into_inner()))
    }

    /// Lay out one recipe entry: its items, and the closure files it needs.
    fn lay_out(&self, entry: &Entry, laid: &mut Laid) -> Result<()> {
        let fail = |m: String| Error::msg(format!("{}: {m}", entry.label));
        let start = laid.later.len();
        match &entry.kind {
            EntryKind::Binary {
                src,
                dest,
                mode,
                owner,
            } => {
                self.binary(entry, src, dest, *mode, *owner, laid)?;
            }
            EntryKind::File {
                src,
                dest,
                mode,
                owner,
            } => {
                self.file(entry, src, dest, *mode, *owner, laid)?;
            }
            EntryKind::Tree {
                src,
                dest,
                owner,
                exclude,
                specials,
            } => {
                let (side, path, host) = self.source_any(src).map_err(fail)?;
                let start = laid.later.len();
                self.tree_excluding(
                    &entry.label,
                    side,
                    &path,
                    &host,
                    dest,
                    TreeRules { exclude, specials },
                    &mut laid.deps,
                    &mut laid.later,
                )?;
                if let Some(o) = owner {
                    for (_, item, _) in &mut laid.later[start..] {
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
                laid.later.push((dest.clone(), item, entry.label.clone()));
            }
            EntryKind::Library { name } => {
                self.library(&entry.label, name, true, &mut laid.deps)?;
            }
            EntryKind::Symlink { dest, target } => laid.later.push((
                dest.clone(),
                Item::symlink(target.clone(), &entry.label).explicit(),
                entry.label.clone(),
            )),
        }
        if !entry.xattrs.is_empty() {
            for (dest, item, _) in &laid.later[start..] {
                if let ItemKind::File { src, .. } = &item.kind {
                    let found = read_xattrs(src, &entry.xattrs).map_err(&fail)?;
                    if !found.is_empty() {
                        laid.xattrs.insert(dest.clone(), found);
                    }
                }
            }
        }
        Ok(())
    }

    /// A `[[binary]]`: an executable ELF file of the platform, with its
    /// closure.
    fn binary(
        &self,
        entry: &Entry,
        src: &SrcSpec,
        dest: &ImagePath,
        mode: Option<u32>,
        owner: Option<Owner>,
        laid: &mut Laid,
    ) -> Result<()> {
        let fail = |m: String| Error::msg(format!("{}: {m}", entry.label));
        let (side, path, host) = self.source(src).map_err(fail)?;
        let bytes_ok = self
            .resolver
            .parse(side, &self.real(side, &path).map_err(fail)?);
        let info = bytes_ok.map_err(|m| fail(format!("read {}: {m}", host.display())))?;
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
        let item = recipe_item(kind, mode.unwrap_or(EXEC_MODE), owner, &entry.label);
        laid.later.push((dest.clone(), item, entry.label.clone()));
        self.collect(&entry.label, side, &path, dest, &mut laid.deps)?;
        Ok(())
    }

    /// A `[[file]]`: copied as it is; an ELF file must be the platform's.
    fn file(
        &self,
        entry: &Entry,
        src: &SrcSpec,
        dest: &ImagePath,
        mode: Option<u32>,
        owner: Option<Owner>,
        laid: &mut Laid,
    ) -> Result<()> {
        let fail = |m: String| Error::msg(format!("{}: {m}", entry.label));
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
            Some(m) => m,
            None => default_mode(&host)?,
        };
        let item = recipe_item(
            ItemKind::File { src: host, size },
            mode,
            owner,
            &entry.label,
        );
        laid.later.push((dest.clone(), item, entry.label.clone()));
        Ok(())
    }

    /// Put what was laid out into the plan: every closure file (through
    /// the sysroot's symlinks), the data files, then the recipe's items and
    /// their extended attributes.
    fn place(&mut self, laid: Laid) -> Result<()> {
        for ((image, side, path), why) in &laid.deps {
            self.materialize(*side, path, image, why, EXEC_MODE)?;
        }
        let data = std::mem::take(&mut *self.data_files.borrow_mut());
        for (path, why) in &data {
            self.materialize(Side::Sysroot, path, path, why, FILE_MODE)?;
        }
        for (dest, item, label) in laid.later {
            self.plan
                .insert(&dest, item)
                .map_err(|m| Error::msg(format!("{label}: place {dest}: {m}")))?;
        }
        for (dest, item, label) in laid.implied {
            self.plan
                .insert_implied(&dest, item)
                .map_err(|m| Error::msg(format!("{label}: place {dest}: {m}")))?;
        }
        for (path, found) in laid.xattrs {
            if let Some(ItemKind::File { .. }) = self.plan.entries.get(&path).map(|i| &i.kind) {
                self.plan.xattrs.insert(path, found);
            }
        }
        Ok(())
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
        let in_base = self
            .plan
            .base
            .as_ref()
            .is_some_and(|b| host.starts_with(b.root()));
        if !relocated {
            for link in &r.links {
                let target = if link.target.is_absolute() {
                    let dir = link.at.parent().unwrap_or(Path::new("/"));
                    sysroot::relative(dir, &sysroot::normalize(&link.target))
                } else {
                    link.target.clone()
                };
                // A symlink the base has as it is is not written again
                // (Plan::insert); one only the sysroot has is.
                let at = ImagePath::from_path(&link.at).map_err(fail)?;
                let item = Item::symlink(target.to_string_lossy(), why);
                self.plan.insert(&at, item).map_err(fail)?;
            }
        }
        if in_base && !relocated {
            // The base has the file where the loader opens it: it is used
            // from there.
            return Ok(());
        }
        let size = file_size(&host).map_err(fail)?;
        let at = ImagePath::from_path(&file_at).map_err(fail)?;
        let item = Item::file(host, size, why).with_mode(mode);
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

    /// An ELF program found in a tree: it must be the platform's, and a
    /// dynamic one brings its closure.
    fn tree_program(
        &self,
        label: &str,
        side: Side,
        src_path: &Path,
        host_file: &Path,
        at: &ImagePath,
        deps: &mut BTreeMap<(PathBuf, Side, PathBuf), String>,
    ) -> Result<()> {
        let fail = |m: String| Error::msg(format!("{label}: {m}"));
        let info = self
            .resolver
            .parse(side, src_path)
            .map_err(|m| fail(format!("read {}: {m}", host_file.display())))?;
        self.toolchain
            .check(&info)
            .map_err(|m| fail(format!("{} {m}", host_file.display())))?;
        if info.dynamic {
            self.collect(label, side, src_path, at, deps)?;
        }
        Ok(())
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
        let entries = walk_tree(&root_host, exclude).map_err(&fail)?;
        // Hard-linked inputs: (device, inode) → indexes into `later`.
        let mut links: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
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
                Item::dir(why)
            } else if t.is_symlink() {
                let target = fs::read_link(entry.path()).with_path("read link", entry.path())?;
                Item::symlink(target.to_string_lossy(), why)
            } else if let Some(probed) = probed {
                let p = probed?;
                if p.content == Content::ElfExecutable {
                    let src_path = r.real.join(rel);
                    self.tree_program(label, side, &src_path, entry.path(), &at, deps)?;
                }
                if let Some(id) = p.linked {
                    links.entry(id).or_default().push(later.len());
                }
                let mode = match p.content {
                    Content::Data => FILE_MODE,
                    _ => EXEC_MODE,
                };
                let item = Item::file(entry.path().to_path_buf(), p.size, why).with_mode(mode);
                if p.elf {
                    item
                } else {
                    item.not_elf()
                }
            } else {
                special_item(entry, specials, why).map_err(&fail)?
            };
            later.push((at, item, label.to_string()));
        }
        mark_hard_links(&links, later);
        Ok(())
    }
}

/// Every entry of a `[[tree]]` below `root_host`, in path order, without
/// what `exclude` leaves out (a pattern with a `/` matches the path below
/// the root, one without matches the name).
fn walk_tree(
    root_host: &Path,
    exclude: &[String],
) -> std::result::Result<Vec<walkdir::DirEntry>, String> {
    let excluded = |e: &walkdir::DirEntry| -> bool {
        if exclude.is_empty() {
            return false;
        }
        let rel = e.path().strip_prefix(root_host).unwrap_or(e.path());
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
    let walker = WalkDir::new(root_host)
        .follow_links(false)
        // Siblings' paths share everything up to their names: comparing
        // the paths is comparing the names, without taking each apart
        // (`sort_by_file_name` parses both paths at every comparison).
        .sort_by(|a, b| a.path().as_os_str().cmp(b.path().as_os_str()))
        .into_iter()
        .filter_entry(|e| !excluded(e));
    let mut entries = Vec::new();
    for entry in walker {
        entries.push(entry.map_err(|e| {
            let p = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!(
                "read {p}: {}",
                e.io_error()
                    .map(crate::error::io_message)
                    .unwrap_or_else(|| e.to_string())
            )
        })?);
    }
    Ok(entries)
}

/// The item of a FIFO or device node a tree keeps, when its `specials`
/// names the kind; a socket never.
fn special_item(
    entry: &walkdir::DirEntry,
    specials: &[SpecialKind],
    why: String,
) -> std::result::Result<Item, String> {
    let t = entry.file_type();
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
        return Err(format!(
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
        ));
    };
    // Recorded from the directory entry: never opened.
    let rdev = entry
        .metadata()
        .map_err(|e| format!("stat {}: {e}", entry.path().display()))?
        .rdev();
    let special = ItemKind::Special {
        kind,
        major: libc::major(rdev),
        minor: libc::minor(rdev),
    };
    Ok(Item::new(special, SPECIAL_MODE, why))
}

/// Within a group of hard links, the first path in image order (the
/// layer's order) carries the bytes; the others become link entries.
fn mark_hard_links(
    links: &BTreeMap<(u64, u64), Vec<usize>>,
    later: &mut [(ImagePath, Item, String)],
) {
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
}

/// An entry a recipe names: its mode and owner as the recipe says.
fn recipe_item(
    kind: ItemKind,
    mode: u32,
    owner: Option<crate::recipe::Owner>,
    label: &str,
) -> Item {
    Item::new(kind, mode, label)
        .with_owner(owner.map_or(0, |o| o.uid), owner.map_or(0, |o| o.gid))
        .explicit()
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
