//! The one layer applier: an image's layers (untrusted tar bytes, from a
//! layout or a registry), applied in order as the OCI image-spec's layer
//! changesets say, into a [`Tree`]: every entry's metadata in a map, and a
//! directory holding the regular files' bytes, real directories and real
//! symlinks, so a `HostFs` over [`Tree::root`] resolves paths as in the image.
//!
//! Every tar name is resolved through the tree's own symlinks (the map,
//! never the host filesystem), clamped to the root as a chroot would, so
//! nothing a layer says can land outside the root: on disk every parent of
//! an entry is a real directory this module made, and every file is created
//! afresh (`O_EXCL | O_NOFOLLOW`) after what was at its path is removed.
//!
//! Whiteouts follow the spec: `DIR/.wh.NAME` hides NAME of the lower layers,
//! `DIR/.wh..wh..opq` everything the lower layers had in DIR; what the same
//! layer adds stays, whatever the order of the tar.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{io_message, one_line, Error, IoResultExt, Result};
use crate::loader::sysroot::MAX_SYMLINK_HOPS;
use crate::recipe::{ImagePath, SpecialKind};

/// The most entries a tree holds, and the most members one layer has.
pub const MAX_ENTRIES: usize = 4_000_000;

/// The most bytes of headers before one member's data: its ustar header,
/// PAX extensions and GNU long names together.
pub const MAX_HEADERS: u64 = 1 << 20;

/// The longest path (and symlink target) an entry has, as Linux's PATH_MAX:
/// the host could not hold a longer one, and it bounds every walk.
pub const MAX_PATH: usize = 4096;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// AUFS metadata names (`.wh..wh.plnk`, …): not part of the image.
const WHITEOUT_META: &str = ".wh..wh.";
const XATTR: &str = "SCHILY.xattr.";

/// An image's filesystem as its layers are applied: every entry's metadata
/// (the truth: owners, modes, device numbers, xattrs) and a directory
/// holding the regular files' bytes at their paths, real directories and
/// real symlinks (so a `HostFs` over [`Tree::root`] resolves paths as in the
/// image).
///
/// On disk, files and directories get modes that let the current user read
/// and traverse them (file `| 0o600`, directory `| 0o700`), owned by the
/// current user; special files are recorded only. [`Tree::restore_owners`]
/// sets the real owners and modes when running as root.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    entries: BTreeMap<ImagePath, Entry>,
    /// Each regular file's hard links. Every `HardLink` names a `File`.
    links: BTreeMap<ImagePath, BTreeSet<ImagePath>>,
}

/// One entry of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// PAX `SCHILY.xattr.*` extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        size: u64,
    },
    /// The target as the layer wrote it.
    Symlink {
        target: String,
    },
    /// Another name of the regular file `target` (always a `File` entry: when
    /// the file is removed, its first remaining link becomes the file).
    HardLink {
        target: ImagePath,
    },
    /// Recorded, never created on disk.
    Special {
        kind: SpecialKind,
        major: u32,
        minor: u32,
    },
}

/// A [`Tree`]'s entries as data ([`Tree::saved`], [`Tree::from_saved`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    entries: Vec<SavedEntry>,
}

/// One entry of a [`Saved`] tree: its kind spelled out as `type` and the
/// fields that kind has.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    /// A symlink's target, or the file a hard link names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<(u32, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<(String, Vec<u8>)>,
}

impl SavedEntry {
    fn of(path: &ImagePath, e: &Entry) -> SavedEntry {
        let (kind, size, target, device) = match &e.kind {
            EntryKind::Dir => ("dir".to_string(), None, None, None),
            EntryKind::File { size } => ("file".to_string(), Some(*size), None, None),
            EntryKind::Symlink { target } => {
                ("symlink".to_string(), None, Some(target.clone()), None)
            }
            EntryKind::HardLink { target } => (
                "link".to_string(),
                None,
                Some(target.as_str().to_string()),
                None,
            ),
            EntryKind::Special { kind, major, minor } => {
                (kind.name().to_string(), None, None, Some((*major, *minor)))
            }
        };
        SavedEntry {
            path: path.as_str().to_string(),
            kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            size,
            target,
            device,
            xattrs: e.xattrs.clone(),
        }
    }

    fn entry(self) -> std::result::Result<(ImagePath, Entry), String> {
        let path = ImagePath::new(&self.path)
            .ok()
            .filter(|p| p.as_str() == self.path)
            .ok_or_else(|| format!("{:?} is not a normalized image path", self.path))?;
        let bad = |what: &str| format!("{path}: {} entry without {what}", self.kind);
        let kind = match self.kind.as_str() {
            "dir" => EntryKind::Dir,
            "file" => EntryKind::File {
                size: self.size.ok_or_else(|| bad("a size"))?,
            },
            "symlink" => EntryKind::Symlink {
                target: self.target.clone().ok_or_else(|| bad("a target"))?,
            },
            "link" => EntryKind::HardLink {
                target: ImagePath::new(self.target.as_deref().ok_or_else(|| bad("a target"))?)
                    .map_err(|e| format!("{path}: {e}"))?,
            },
            other => {
                let kind = SpecialKind::from_name(other)
                    .ok_or_else(|| format!("{path}: unknown entry type {other:?}"))?;
                let (major, minor) = self.device.ok_or_else(|| bad("a device number"))?;
                EntryKind::Special { kind, major, minor }
            }
        };
        let entry = Entry {
            kind,
            mode: self.mode & 0o7777,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            xattrs: self.xattrs,
        };
        Ok((path, entry))
    }
}

/// What one layer has added so far: whiteouts never hide these.
#[derive(Default)]
struct Added {
    paths: HashSet<ImagePath>,
    /// The parents of `paths`, which a whiteout keeps so that they stay.
    parents: HashSet<ImagePath>,
}

impl Added {
    fn insert(&mut self, path: &ImagePath) {
        self.paths.insert(path.clone());
        let mut p = path.parent();
        while let Some(dir) = p {
            p = dir.parent();
            if !self.parents.insert(dir) {
                break;
            }
        }
    }

    fn keeps(&self, path: &ImagePath) -> bool {
        self.paths.contains(path) || self.parents.contains(path)
    }
}

/// How [`Tree::walk`] treats the last component.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Not followed: the entry's own name (what a tar member replaces).
    Keep,
    /// Followed when a symlink.
    Follow,
    /// Followed, and must be a directory (or missing).
    Dir,
}

impl Tree {
    /// A tree materialized into `root`, an empty directory.
    pub fn new(root: &Path) -> Result<Tree> {
        let mut list = std::fs::read_dir(root).with_path("read directory", root)?;
        if list.next().is_some() {
            return Err(Error::msg(format!(
                "apply layers into {}: the directory is not empty",
                root.display()
            )));
        }
        Ok(Tree {
            root: root.to_path_buf(),
            entries: BTreeMap::new(),
            links: BTreeMap::new(),
        })
    }

    /// Apply one uncompressed layer tar; `what` names it in errors ("layer
    /// sha256:… of base X"). After an error the tree holds part of the layer
    /// (still all inside the root, the map and the disk agreeing).
    pub fn apply(&mut self, layer: impl Read, what: &str) -> Result<()> {
        let budget = Rc::new(Cell::new(None));
        let mut archive = tar::Archive::new(Metered {
            inner: layer,
            budget: budget.clone(),
        });
        let read_fail =
            |e: io::Error| Error::msg(format!("apply {what}: read tar: {}", tar_message(&e)));
        let mut members = archive.entries().map_err(read_fail)?;
        let mut added = Added::default();
        for n in 0.. {
            // The previous member's data is read to its end, so all the
            // tar crate reads in `next` is headers and extension data.
            budget.set(Some(MAX_HEADERS + 1024));
            let next = members.next();
            budget.set(None);
            let mut member = match next {
                None => break,
                Some(m) => m.map_err(read_fail)?,
            };
            if n >= MAX_ENTRIES {
                return Err(Error::msg(format!(
                    "apply {what}: more than {MAX_ENTRIES} entries"
                )));
            }
            self.member(&mut member, &mut added).map_err(|e| {
                let e = e.context(format!(
                    "apply {what}: entry {}",
                    show(&member.path_bytes())
                ));
                // A host path holds the entry's name, which may hold a newline.
                match e.to_string() {
                    m if m.contains(char::is_control) => Error::msg(one_line(&m)),
                    _ => e,
                }
            })?;
            io::copy(&mut member, &mut io::sink()).map_err(read_fail)?;
        }
        Ok(())
    }

    /// Delete `path` (its parents resolved through the tree's symlinks, the
    /// last component not followed) and everything under it. False if there
    /// was nothing there.
    pub fn remove(&mut self, path: &ImagePath) -> Result<bool> {
        let comps: Vec<&str> = path.rel().split('/').collect();
        let (last, parents) = comps.split_last().expect("an image path has a component");
        let Ok(at) = self.place_in(parents, last) else {
            return Ok(false);
        };
        self.remove_tree(&at)
    }

    /// Take `path` (resolved as [`Tree::remove`] does) and everything under
    /// it out of the map only, leaving the disk as it is: a view of the
    /// tree without them, for a tree shared between builds (a base in the
    /// cache). What reads the disk must hide them itself. False if there
    /// was nothing there.
    pub fn forget(&mut self, path: &ImagePath) -> Result<bool> {
        let comps: Vec<&str> = path.rel().split('/').collect();
        let (last, parents) = comps.split_last().expect("an image path has a component");
        let Ok(at) = self.place_in(parents, last) else {
            return Ok(false);
        };
        Ok(self.forget_tree(&at))
    }

    /// The tree as data, to be stored beside its root and read back with
    /// [`Tree::from_saved`]: every entry in path order (hard links are
    /// found again from their entries).
    pub fn saved(&self) -> Saved {
        Saved {
            entries: self
                .entries
                .iter()
                .map(|(p, e)| SavedEntry::of(p, e))
                .collect(),
        }
    }

    /// A tree whose bytes are already at `root`, with the entries `saved`
    /// lists (checked as a layer's would be: valid paths in order, each
    /// parent a directory of the tree, each hard link naming a file).
    pub fn from_saved(root: &Path, saved: Saved) -> std::result::Result<Tree, String> {
        let mut tree = Tree {
            root: root.to_path_buf(),
            entries: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        if saved.entries.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        for s in saved.entries {
            let (path, entry) = s.entry()?;
            if let Some((last, _)) = tree.entries.last_key_value() {
                if *last >= path {
                    return Err(format!("{path} is out of order"));
                }
            }
            if let Some(parent) = path.parent() {
                if !matches!(
                    tree.entries.get(&parent).map(|e| &e.kind),
                    Some(EntryKind::Dir)
                ) {
                    return Err(format!("{path}: its parent is not a directory of the tree"));
                }
            }
            if let EntryKind::HardLink { target } = &entry.kind {
                if !matches!(
                    tree.entries.get(target).map(|e| &e.kind),
                    Some(EntryKind::File { .. })
                ) {
                    return Err(format!("{path}: links to {target}, not a file before it"));
                }
                tree.links
                    .entry(target.clone())
                    .or_default()
                    .insert(path.clone());
            }
            tree.entries.insert(path, entry);
        }
        Ok(tree)
    }

    /// The tree's directory was moved (renamed) to `root`.
    pub fn move_root(&mut self, root: &Path) {
        self.root = root.to_path_buf();
    }

    pub fn get(&self, path: &ImagePath) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn entries(&self) -> &BTreeMap<ImagePath, Entry> {
        &self.entries
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry `path` is on disk (a regular file's bytes, a
    /// directory, a symlink; nothing for a special file).
    pub fn host_path(&self, path: &ImagePath) -> PathBuf {
        self.root.join(path.rel())
    }

    /// Follow the tree's own symlinks (the parents and the last component),
    /// staying inside the root. None if the path is missing, is the root
    /// itself, or loops.
    pub fn resolve(&self, path: &ImagePath) -> Option<ImagePath> {
        let comps: Vec<&str> = path.rel().split('/').collect();
        let at = self.walk(&comps, Last::Follow).ok()?;
        let at = ImagePath::new(&at).ok()?;
        self.entries.contains_key(&at).then_some(at)
    }

    /// Give every entry on disk its real owner and mode (lchown, then chmod,
    /// which keeps set-id bits chown would clear), children before parents.
    /// Only root can: call it when running as root.
    pub fn restore_owners(&self) -> Result<()> {
        for (path, e) in self.entries.iter().rev() {
            let host = self.host_path(path);
            match e.kind {
                EntryKind::Dir | EntryKind::File { .. } => {
                    std::os::unix::fs::lchown(&host, Some(e.uid), Some(e.gid))
                        .with_path("change owner of", &host)?;
                    set_mode(&host, e.mode)?;
                }
                EntryKind::Symlink { .. } => {
                    std::os::unix::fs::lchown(&host, Some(e.uid), Some(e.gid))
                        .with_path("change owner of", &host)?;
                }
                // A hard link is its file's inode; a special is not on disk.
                EntryKind::HardLink { .. } | EntryKind::Special { .. } => {}
            }
        }
        Ok(())
    }

    /// Apply one tar member.
    fn member<R: Read>(&mut self, member: &mut tar::Entry<R>, added: &mut Added) -> Result<()> {
        let header = member.header();
        let ty = header.entry_type();
        if ty.is_pax_global_extensions() {
            return Ok(());
        }
        let name = member.path_bytes().into_owned();
        let comps = components(&name).map_err(Error::msg)?;
        let Some((&last, parents)) = comps.split_last() else {
            // The root itself ("./"): the tree's root is its own.
            return match ty.is_dir() {
                true => Ok(()),
                false => Err(Error::msg("names the root, not an entry in it")),
            };
        };
        if let Some(hidden) = last.strip_prefix(WHITEOUT) {
            return self.whiteout(parents, last, hidden, added);
        }
        let old_dir = ty == tar::EntryType::Regular && name.ends_with(b"/");
        let header = member.header();
        let mut entry = Entry {
            kind: EntryKind::Dir,
            mode: header.mode().map_err(bad_header)? & 0o7777,
            uid: id(header.uid())?,
            gid: id(header.gid())?,
            mtime: header.mtime().map_err(bad_header)?,
            xattrs: xattrs(member)?,
        };
        let header = member.header();
        let link_name = || -> Result<String> {
            let bytes = member.link_name_bytes().unwrap_or_default().into_owned();
            String::from_utf8(bytes).map_err(|_| Error::msg("link target is not valid UTF-8"))
        };
        let device = || -> Result<(u32, u32)> {
            let major = header.device_major().map_err(bad_header)?.unwrap_or(0);
            let minor = header.device_minor().map_err(bad_header)?.unwrap_or(0);
            Ok((major, minor))
        };
        let special = |kind| -> Result<EntryKind> {
            let (major, minor) = device()?;
            Ok(EntryKind::Special { kind, major, minor })
        };
        let kind = match ty {
            _ if old_dir => EntryKind::Dir,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File { size: 0 },
            tar::EntryType::Symlink => {
                let target = link_name()?;
                if target.is_empty() || target.len() >= MAX_PATH {
                    return Err(Error::msg(format!(
                        "symlink target is empty or longer than {} bytes",
                        MAX_PATH - 1
                    )));
                }
                EntryKind::Symlink { target }
            }
            tar::EntryType::Link => {
                let target = link_name()?;
                let comps = components(target.as_bytes())
                    .map_err(|m| Error::msg(format!("hard link target: {m}")))?;
                let Some((&tlast, tparents)) = comps.split_last() else {
                    return Err(Error::msg("hard link to the root"));
                };
                let at = self
                    .place_in(tparents, tlast)
                    .map_err(|m| Error::msg(format!("hard link target {target:?}: {m}")))?;
                let file = match self.entries.get(&at).map(|e| &e.kind) {
                    Some(EntryKind::File { .. }) => at,
                    Some(EntryKind::HardLink { target }) => target.clone(),
                    _ => {
                        return Err(Error::msg(format!(
                            "hard link target {target:?} is not a regular file of the image"
                        )))
                    }
                };
                EntryKind::HardLink { target: file }
            }
            tar::EntryType::Char => special(SpecialKind::CharDevice)?,
            tar::EntryType::Block => special(SpecialKind::BlockDevice)?,
            tar::EntryType::Fifo => special(SpecialKind::Fifo)?,
            tar::EntryType::GNUSparse => return Err(Error::msg("sparse files are not supported")),
            other => {
                return Err(Error::msg(format!(
                    "unsupported entry type {:?}",
                    char::from(other.as_byte())
                )))
            }
        };
        let path = self.make_parents(parents, last, added)?;
        if let EntryKind::HardLink { target } = &kind {
            if target == &path || is_under(target, &path) {
                return Err(Error::msg("hard link to itself"));
            }
        }
        let host = self.host_path(&path);
        match (self.entries.get_mut(&path), &kind) {
            // A directory over a directory keeps what is in it.
            (Some(old), EntryKind::Dir) if old.kind == EntryKind::Dir => {
                set_mode(&host, (entry.mode & 0o777) | 0o700)?;
                *old = entry;
                added.insert(&path);
                return Ok(());
            }
            (Some(_), _) => {
                self.remove_tree(&path)?;
            }
            (None, _) => {}
        }
        entry.kind = match kind {
            EntryKind::Dir => {
                make_dir(&host, entry.mode)?;
                EntryKind::Dir
            }
            EntryKind::File { .. } => EntryKind::File {
                size: write_file(&host, entry.mode, member)?,
            },
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(&target, &host).with_path("create symlink", &host)?;
                EntryKind::Symlink { target }
            }
            EntryKind::HardLink { target } => {
                let from = self.host_path(&target);
                std::fs::hard_link(&from, &host).with_path("create hard link", &host)?;
                EntryKind::HardLink { target }
            }
            special @ EntryKind::Special { .. } => special,
        };
        self.insert(path, entry, added)
    }

    /// `DIR/.wh.NAME` (`hidden` is NAME) or `DIR/.wh..wh..opq`.
    fn whiteout(
        &mut self,
        parents: &[&str],
        last: &str,
        hidden: &str,
        added: &mut Added,
    ) -> Result<()> {
        if last == OPAQUE {
            let dir = self.walk(parents, Last::Dir).map_err(Error::msg)?;
            return match dir.as_str() {
                "" => self.hide(None, added),
                d => self.hide(Some(&ImagePath::new(d).map_err(Error::msg)?), added),
            };
        }
        if last.starts_with(WHITEOUT_META) {
            return Ok(());
        }
        if matches!(hidden, "" | "." | "..") {
            return Err(Error::msg("whiteout names no entry of its directory"));
        }
        let at = self.place_in(parents, hidden).map_err(Error::msg)?;
        if !self.entries.contains_key(&at) {
            return Ok(());
        }
        if !added.keeps(&at) {
            return self.remove_tree(&at).map(|_| ());
        }
        // The layer itself put something there: only the lower layers'
        // entries under it go.
        self.hide(Some(&at), added)
    }

    /// Remove every entry under `dir` (None: the root) that the current
    /// layer did not add.
    fn hide(&mut self, dir: Option<&ImagePath>, added: &Added) -> Result<()> {
        let mut doomed: Vec<ImagePath> = Vec::new();
        let candidates: Vec<&ImagePath> = match dir {
            None => self.entries.keys().collect(),
            Some(d) => under(&self.entries, d).filter(|k| *k != d).collect(),
        };
        for k in candidates {
            if doomed.last().is_some_and(|d| is_under(k, d)) || added.keeps(k) {
                continue;
            }
            doomed.push(k.clone());
        }
        for k in &doomed {
            self.remove_tree(k)?;
        }
        Ok(())
    }

    /// Add a new entry (its path already free, its parents made).
    fn insert(&mut self, path: ImagePath, entry: Entry, added: &mut Added) -> Result<()> {
        if self.entries.len() >= MAX_ENTRIES {
            return Err(Error::msg(format!(
                "the image has more than {MAX_ENTRIES} entries"
            )));
        }
        if let EntryKind::HardLink { target } = &entry.kind {
            self.links
                .entry(target.clone())
                .or_default()
                .insert(path.clone());
        }
        added.insert(&path);
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Delete `path` and everything under it, from the disk and the map.
    fn remove_tree(&mut self, path: &ImagePath) -> Result<bool> {
        let Some(top) = self.entries.get(path) else {
            return Ok(false);
        };
        let host = self.host_path(path);
        let gone = match top.kind {
            // std's remove_dir_all never follows a symlink.
            EntryKind::Dir => std::fs::remove_dir_all(&host),
            EntryKind::Special { .. } => Ok(()),
            _ => std::fs::remove_file(&host),
        };
        match gone {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io("remove", &host, e))
            }
            _ => {}
        }
        Ok(self.forget_tree(path))
    }

    /// Take `path` and everything under it out of the map (the disk is the
    /// caller's): a file's first remaining hard link becomes the file.
    fn forget_tree(&mut self, path: &ImagePath) -> bool {
        if !self.entries.contains_key(path) {
            return false;
        }
        let keys: Vec<ImagePath> = under(&self.entries, path).cloned().collect();
        let removed: HashSet<&ImagePath> = keys.iter().collect();
        for k in &keys {
            let Some(e) = self.entries.remove(k) else {
                continue;
            };
            match e.kind {
                EntryKind::HardLink { target } => {
                    if let Some(set) = self.links.get_mut(&target) {
                        set.remove(k);
                        if set.is_empty() {
                            self.links.remove(&target);
                        }
                    }
                }
                EntryKind::File { size } => {
                    // The bytes live on in the file's other names: the first
                    // that stays becomes the file.
                    let Some(set) = self.links.remove(k) else {
                        continue;
                    };
                    let mut stay = set.into_iter().filter(|l| !removed.contains(l));
                    let Some(first) = stay.next() else { continue };
                    let rest: BTreeSet<ImagePath> = stay.collect();
                    if let Some(f) = self.entries.get_mut(&first) {
                        f.kind = EntryKind::File { size };
                    }
                    for l in &rest {
                        if let Some(f) = self.entries.get_mut(l) {
                            f.kind = EntryKind::HardLink {
                                target: first.clone(),
                            };
                        }
                    }
                    if !rest.is_empty() {
                        self.links.insert(first, rest);
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// The path a member named `parents/last` has: its parents resolved
    /// through the tree's symlinks (each a directory or missing), the last
    /// component not followed. Creates nothing.
    fn place_in(&self, parents: &[&str], last: &str) -> std::result::Result<ImagePath, String> {
        let dir = self.walk(parents, Last::Dir)?;
        let at = format!("{dir}/{last}");
        if at.len() > MAX_PATH {
            return Err(format!("path is longer than {MAX_PATH} bytes"));
        }
        ImagePath::new(&at)
    }

    /// [`Tree::place_in`], creating the missing parents (0755, root).
    fn make_parents(
        &mut self,
        parents: &[&str],
        last: &str,
        added: &mut Added,
    ) -> Result<ImagePath> {
        let at = self.place_in(parents, last).map_err(Error::msg)?;
        let mut missing = Vec::new();
        let mut p = at.parent();
        while let Some(dir) = p {
            if self.entries.contains_key(&dir) {
                break;
            }
            p = dir.parent();
            missing.push(dir);
        }
        for dir in missing.into_iter().rev() {
            let host = self.host_path(&dir);
            make_dir(&host, 0o755)?;
            let entry = Entry {
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            };
            self.insert(dir, entry, added)?;
        }
        Ok(at)
    }

    /// Where `comps` leads through the tree's symlinks, as a chroot would
    /// resolve it: `..` stops at the root, an absolute target starts again
    /// from the root. Every component but the last must be a directory or
    /// missing. Gives "" for the root, else "/a/b".
    fn walk(&self, comps: &[&str], last: Last) -> std::result::Result<String, String> {
        let mut pending: VecDeque<String> = comps.iter().map(|c| c.to_string()).collect();
        let mut at = String::new();
        let mut depth = 0usize;
        // Nothing is under a missing directory (every entry's parents are
        // in the map): below the depth where `at` went missing, no lookups.
        let mut missing_below: Option<usize> = None;
        let mut hops = 0;
        while let Some(c) = pending.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    at.truncate(at.rfind('/').unwrap_or(0));
                    depth = depth.saturating_sub(1);
                    if missing_below.is_some_and(|m| depth <= m) {
                        missing_below = None;
                    }
                    continue;
                }
                _ => {}
            }
            let is_last = pending.is_empty();
            let next = format!("{at}/{c}");
            if next.len() > MAX_PATH {
                return Err(format!("path is longer than {MAX_PATH} bytes"));
            }
            let kind = match missing_below {
                Some(_) => None,
                None => ImagePath::new(&next)
                    .ok()
                    .and_then(|k| self.entries.get(&k))
                    .map(|e| &e.kind),
            };
            match kind {
                Some(EntryKind::Symlink { target }) if !is_last || last != Last::Keep => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(format!("too many levels of symbolic links at {next}"));
                    }
                    if target.starts_with('/') {
                        at.clear();
                        depth = 0;
                    }
                    for t in target.split('/').rev() {
                        pending.push_front(t.to_string());
                    }
                    continue;
                }
                None | Some(EntryKind::Dir) => {}
                Some(_) if is_last && last != Last::Dir => {}
                Some(_) => return Err(format!("{next} is not a directory")),
            }
            if kind.is_none() && missing_below.is_none() {
                missing_below = Some(depth);
            }
            at = next;
            depth += 1;
        }
        Ok(at)
    }
}

/// A member's name as components: leading "./" and "/" and every "." or
/// empty component dropped; ".." refused (a layer never needs one).
fn components(name: &[u8]) -> std::result::Result<Vec<&str>, String> {
    let name = std::str::from_utf8(name).map_err(|_| "name is not valid UTF-8".to_string())?;
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("name has a \"..\" component".into()),
            c if c.contains('\0') => return Err("name contains a NUL byte".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The entries at `path` and under it.
fn under<'a, V>(
    map: &'a BTreeMap<ImagePath, V>,
    path: &'a ImagePath,
) -> impl Iterator<Item = &'a ImagePath> + 'a {
    // Keys under "/a" start with "/a/", but "/a-b" and "/a.d/x" sort
    // between them and "/a": skip those, stop past the prefix.
    map.range(path..)
        .map(|(k, _)| k)
        .take_while(move |k| k.as_str().starts_with(path.as_str()))
        .filter(move |k| *k == path || is_under(k, path))
}

/// `path` is strictly below `dir`.
fn is_under(path: &ImagePath, dir: &ImagePath) -> bool {
    path.as_str()
        .strip_prefix(dir.as_str())
        .is_some_and(|rest| rest.starts_with('/'))
}

/// A member's name for messages: lossy, escaped, not too long.
fn show(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    let mut cut: String = s.chars().take(200).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

fn bad_header(e: io::Error) -> Error {
    Error::msg(format!("read tar header: {}", tar_message(&e)))
}

/// The tar crate's messages span lines ("…\n when getting cksum for …").
fn tar_message(e: &io::Error) -> String {
    one_line(&io_message(e).replace("\n ", "; "))
}

fn id(n: io::Result<u64>) -> Result<u32> {
    let n = n.map_err(bad_header)?;
    u32::try_from(n).map_err(|_| Error::msg(format!("owner {n} is out of range")))
}

/// The member's `SCHILY.xattr.*` PAX records, sorted by name (the last of
/// a name wins).
fn xattrs<R: Read>(member: &mut tar::Entry<R>) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    let Some(exts) = member.pax_extensions().map_err(bad_header)? else {
        return Ok(Vec::new());
    };
    for ext in exts {
        let ext = ext.map_err(bad_header)?;
        let Ok(key) = ext.key() else { continue };
        if let Some(name) = key.strip_prefix(XATTR) {
            out.insert(name.to_string(), ext.value_bytes().to_vec());
        }
    }
    Ok(out.into_iter().collect())
}

fn set_mode(host: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(host, std::fs::Permissions::from_mode(mode))
        .with_path("change mode of", host)
}

/// A directory the current user can write into and traverse.
fn make_dir(host: &Path, mode: u32) -> Result<()> {
    let mode = (mode & 0o777) | 0o700;
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(host)
        .with_path("create directory", host)?;
    // Not the umask's: the mode asked for.
    set_mode(host, mode)
}

/// A new regular file at `host` (nothing may be there: never written
/// through a symlink), holding the member's data; its size.
fn write_file(host: &Path, mode: u32, data: &mut impl Read) -> Result<u64> {
    let mode = (mode & 0o777) | 0o600;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(host)
        .with_path("create", host)?;
    let written = io::copy(data, &mut file)
        .map_err(|e| Error::msg(format!("read file data: {}", tar_message(&e))))
        .and_then(|n| {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .with_path("change mode of", host)?;
            Ok(n)
        });
    if written.is_err() {
        // The map never lists it, so the disk must not hold it either.
        let _ = std::fs::remove_file(host);
    }
    written
}

/// A reader that fails once more than the budget is read while a budget is
/// set: the tar crate reads PAX extensions and GNU long names whole into
/// memory, and a compressed layer can claim gigabytes of them in a few bytes.
pub(crate) struct Metered<R> {
    pub(crate) inner: R,
    pub(crate) budget: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(left) = self.budget.get() {
            let left = left.checked_sub(n as u64).ok_or_else(|| {
                io::Error::other(format!(
                    "a member's headers (PAX extensions, long names) exceed {} KiB",
                    MAX_HEADERS >> 10
                ))
            })?;
            self.budget.set(Some(left));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::EntryType;

    /// Tar bytes written header by header, names and link names verbatim
    /// (the tar crate's builder refuses the hostile ones).
    #[derive(Default)]
    struct Layer(Vec<u8>);

    impl Layer {
        fn add(mut self, name: &str, ty: EntryType, link: &str, data: &[u8], mode: u32) -> Layer {
            let mut h = tar::Header::new_gnu();
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(ty);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            self.0.extend_from_slice(h.as_bytes());
            self.0.extend_from_slice(data);
            self.0.resize(self.0.len().div_ceil(512) * 512, 0);
            self
        }
        fn file(self, name: &str, data: &str) -> Layer {
            self.add(name, EntryType::Regular, "", data.as_bytes(), 0o644)
        }
        fn dir(self, name: &str) -> Layer {
            self.add(name, EntryType::Directory, "", b"", 0o755)
        }
        fn symlink(self, name: &str, target: &str) -> Layer {
            self.add(name, EntryType::Symlink, target, b"", 0o777)
        }
        fn hard(self, name: &str, target: &str) -> Layer {
            self.add(name, EntryType::Link, target, b"", 0o644)
        }
        fn bytes(mut self) -> Vec<u8> {
            self.0.extend_from_slice(&[0; 1024]);
            self.0
        }
    }

    /// A tree in `<tmp>/root`, beside an empty `<tmp>/outside` that must
    /// stay empty.
    struct Fixture {
        tmp: tempfile::TempDir,
        tree: Tree,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir(tmp.path().join("root")).unwrap();
            std::fs::create_dir(tmp.path().join("outside")).unwrap();
            let tree = Tree::new(&tmp.path().join("root")).unwrap();
            Fixture { tmp, tree }
        }
        fn apply(&mut self, layer: Layer) -> Result<()> {
            let r = self.tree.apply(&layer.bytes()[..], "layer L");
            let outside = self.tmp.path().join("outside");
            let stray: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
            assert!(stray.is_empty(), "wrote outside the root: {stray:?}");
            r
        }
        fn kind(&self, p: &str) -> Option<EntryKind> {
            self.tree.get(&path(p)).map(|e| e.kind.clone())
        }
        fn read(&self, p: &str) -> String {
            std::fs::read_to_string(self.tree.host_path(&path(p))).unwrap()
        }
        fn on_disk(&self, p: &str) -> bool {
            std::fs::symlink_metadata(self.tree.host_path(&path(p))).is_ok()
        }
    }

    fn path(p: &str) -> ImagePath {
        ImagePath::new(p).unwrap()
    }

    fn file(size: u64) -> Option<EntryKind> {
        Some(EntryKind::File { size })
    }

    #[test]
    fn a_whiteout_removes_a_lower_entry_and_is_never_an_entry() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .file("./etc/a", "a")
                .file("etc/b", "b")
                .dir("etc/d/")
                .file("etc/d/x", "x"),
        )
        .unwrap();
        f.apply(Layer::default().file("etc/.wh.a", "").file("etc/.wh.d", ""))
            .unwrap();
        assert_eq!(f.kind("/etc/a"), None);
        assert!(!f.on_disk("/etc/a") && !f.on_disk("/etc/d"));
        assert_eq!(f.kind("/etc/d/x"), None);
        assert_eq!(f.read("/etc/b"), "b");
        assert!(f
            .tree
            .entries()
            .keys()
            .all(|k| !k.as_str().contains(".wh.")));
        assert!(!f.tree.root().join("etc/.wh.a").exists());
    }

    #[test]
    fn an_opaque_dir_hides_the_lower_layers_only() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .file("d/old", "o")
                .file("d/sub/x", "x")
                .file("d/sub/y", "y")
                .file("e", "e"),
        )
        .unwrap();
        f.apply(
            Layer::default()
                .file("d/before", "b")
                .file("d/sub/new", "n")
                .file("d/.wh..wh..opq", "")
                .file("d/after", "a"),
        )
        .unwrap();
        let names: Vec<&str> = f.tree.entries().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["/d", "/d/after", "/d/before", "/d/sub", "/d/sub/new", "/e"]
        );
        assert!(!f.on_disk("/d/old") && !f.on_disk("/d/sub/x"));
        assert_eq!(f.read("/d/sub/new"), "n");
    }

    #[test]
    fn a_whiteout_in_the_same_layer_keeps_what_the_layer_adds() {
        let mut f = Fixture::new();
        f.apply(Layer::default().file("d/x", "lower")).unwrap();
        f.apply(
            Layer::default()
                .file("d/y", "same")
                .file("d/.wh.y", "")
                .file("d/.wh.x", ""),
        )
        .unwrap();
        assert_eq!(f.kind("/d/y"), file(4));
        assert_eq!(f.kind("/d/x"), None);
    }

    #[test]
    fn entries_under_a_symlinked_parent_land_where_the_image_puts_them() {
        let mut f = Fixture::new();
        f.apply(Layer::default().dir("usr/lib/").symlink("lib", "usr/lib"))
            .unwrap();
        f.apply(
            Layer::default()
                .file("lib/libc.so.6", "libc")
                .file("lib/.wh.gone", ""),
        )
        .unwrap();
        assert_eq!(f.kind("/usr/lib/libc.so.6"), file(4));
        assert_eq!(f.kind("/lib/libc.so.6"), None);
        assert_eq!(
            f.kind("/lib"),
            Some(EntryKind::Symlink {
                target: "usr/lib".into()
            })
        );
        assert_eq!(
            f.tree.resolve(&path("/lib/libc.so.6")),
            Some(path("/usr/lib/libc.so.6"))
        );
        assert_eq!(f.read("/usr/lib/libc.so.6"), "libc");
    }

    #[test]
    fn symlinks_that_leave_the_root_are_clamped_to_it() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .symlink("evil", "/../../outside")
                .symlink("up", "../../../../outside")
                .symlink("a/deep", "../../../outside"),
        )
        .unwrap();
        f.apply(
            Layer::default()
                .file("evil/passwd", "p")
                .file("up/q", "q")
                .file("a/deep/r", "r"),
        )
        .unwrap();
        assert_eq!(f.kind("/outside/passwd"), file(1));
        assert_eq!(f.kind("/outside/q"), file(1));
        assert_eq!(f.kind("/outside/r"), file(1));
        assert_eq!(f.read("/outside/passwd"), "p");
        // The links themselves stay verbatim.
        assert_eq!(
            std::fs::read_link(f.tree.host_path(&path("/evil"))).unwrap(),
            Path::new("/../../outside")
        );
    }

    #[test]
    fn a_file_replaces_a_planted_symlink_instead_of_writing_through_it() {
        let mut f = Fixture::new();
        let victim = f.tmp.path().join("victim");
        std::fs::write(&victim, "host").unwrap();
        let target = victim.to_str().unwrap().to_string();
        f.apply(Layer::default().symlink("x", &target)).unwrap();
        f.apply(Layer::default().file("x", "image")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host");
        assert_eq!(f.read("/x"), "image");
        assert_eq!(f.kind("/x"), file(5));
    }

    #[test]
    fn a_dotdot_name_is_refused_naming_layer_and_entry() {
        for name in ["a/../../x", "../etc/passwd", "./.."] {
            let mut f = Fixture::new();
            let e = f
                .apply(Layer::default().file(name, "x"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("apply layer L: entry "), "{e}");
            assert!(e.contains(name) && e.contains("\"..\""), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn a_hard_link_keeps_the_bytes_when_its_target_goes() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .file("bin/a", "bytes")
                .hard("bin/b", "./bin/a")
                .hard("bin/c", "bin/b"),
        )
        .unwrap();
        assert_eq!(
            f.kind("/bin/b"),
            Some(EntryKind::HardLink {
                target: path("/bin/a")
            })
        );
        assert_eq!(
            f.kind("/bin/c"),
            Some(EntryKind::HardLink {
                target: path("/bin/a")
            })
        );
        f.apply(Layer::default().file("bin/.wh.a", "")).unwrap();
        assert_eq!(f.kind("/bin/b"), file(5));
        assert_eq!(
            f.kind("/bin/c"),
            Some(EntryKind::HardLink {
                target: path("/bin/b")
            })
        );
        assert_eq!(f.read("/bin/b"), "bytes");
        assert_eq!(f.read("/bin/c"), "bytes");
    }

    #[test]
    fn a_hard_link_to_anything_but_a_file_of_the_image_is_refused() {
        let mut f = Fixture::new();
        std::fs::write(f.tmp.path().join("host"), "host").unwrap();
        f.apply(Layer::default().dir("d/").symlink("s", "/../.."))
            .unwrap();
        for target in ["../host", "/host", "s/host", "d", "s", "missing"] {
            let e = f
                .apply(Layer::default().hard("l", target))
                .unwrap_err()
                .to_string();
            assert!(e.contains("hard link"), "{target}: {e}");
            assert_eq!(f.kind("/l"), None);
        }
    }

    #[test]
    fn a_file_over_a_directory_removes_the_directory_tree() {
        let mut f = Fixture::new();
        f.apply(Layer::default().file("d/x", "x").file("d/e/y", "y"))
            .unwrap();
        f.apply(Layer::default().file("d", "now a file")).unwrap();
        assert_eq!(f.kind("/d"), file(10));
        assert_eq!(f.kind("/d/x"), None);
        assert_eq!(f.read("/d"), "now a file");
        assert_eq!(f.tree.entries().len(), 1);
    }

    #[test]
    fn a_directory_over_a_directory_keeps_its_children_and_takes_the_new_mode() {
        let mut f = Fixture::new();
        f.apply(Layer::default().file("d/x", "x")).unwrap();
        f.apply(Layer::default().add("d/", EntryType::Directory, "", b"", 0o1777))
            .unwrap();
        assert_eq!(f.tree.get(&path("/d")).unwrap().mode, 0o1777);
        assert_eq!(f.read("/d/x"), "x");
    }

    #[test]
    fn remove_deletes_a_path_and_everything_under_it() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .file("usr/share/doc/a", "a")
                .symlink("doc", "usr/share/doc")
                .file("usr/x", "x"),
        )
        .unwrap();
        assert!(f.tree.remove(&path("/doc/a")).unwrap());
        assert_eq!(f.kind("/usr/share/doc/a"), None);
        assert!(f.tree.remove(&path("/usr/share")).unwrap());
        assert!(!f.on_disk("/usr/share"));
        assert!(!f.tree.remove(&path("/usr/share")).unwrap());
        assert_eq!(f.kind("/usr/x"), file(1));
        assert!(f.kind("/doc").is_some());
    }

    #[test]
    fn forget_takes_paths_out_of_the_map_only_and_a_link_becomes_the_file() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .file("usr/share/doc/a", "a")
                .symlink("doc", "usr/share/doc")
                .file("usr/x", "x")
                .hard("usr/y", "usr/share/doc/a"),
        )
        .unwrap();
        assert!(f.tree.forget(&path("/doc")).unwrap(), "the symlink itself");
        assert!(f.kind("/doc").is_none() && f.on_disk("/doc"));
        assert!(f.tree.forget(&path("/usr/share")).unwrap());
        assert_eq!(f.kind("/usr/share/doc/a"), None);
        assert!(f.on_disk("/usr/share/doc/a"), "the disk is left alone");
        assert_eq!(f.kind("/usr/y"), file(1), "the remaining link is the file");
        assert!(!f.tree.forget(&path("/usr/share")).unwrap());
        assert_eq!(f.kind("/usr/x"), file(1));
    }

    #[test]
    fn a_saved_tree_reads_back_the_same_and_a_damaged_one_is_refused() {
        let mut f = Fixture::new();
        f.apply(
            Layer::default()
                .file("etc/a", "a")
                .dir("etc/d/")
                .symlink("etc/l", "../usr")
                .hard("etc/h", "etc/a"),
        )
        .unwrap();
        let saved = serde_json::to_string(&f.tree.saved()).unwrap();
        let back = Tree::from_saved(f.tree.root(), serde_json::from_str(&saved).unwrap()).unwrap();
        assert_eq!(back.entries(), f.tree.entries());
        assert_eq!(back.links, f.tree.links);
        assert_eq!(back.root(), f.tree.root());

        let refused = |text: String, why: &str| {
            let s: Saved = serde_json::from_str(&text).unwrap();
            let e = Tree::from_saved(f.tree.root(), s).expect_err(why);
            assert!(!e.contains('\n'), "{why}: {e}");
            e
        };
        // Out of order, a parent that is not a directory, a link to what is
        // not a file, a path that is not normalized, an unknown type.
        let swapped = saved.replacen("\"/etc/a\"", "\"/etc/zz\"", 1);
        assert!(refused(swapped, "order").contains("out of order"));
        let orphan = saved.replacen("\"/etc/d\"", "\"/etc/a/d\"", 1);
        refused(orphan, "a file's child");
        let bad_link = saved.replacen("\"target\":\"/etc/a\"", "\"target\":\"/etc/d\"", 1);
        assert!(refused(bad_link, "a link to a directory").contains("not a file"));
        let dotted = saved.replacen("\"/etc/l\"", "\"/etc/./l\"", 1);
        assert!(refused(dotted, "not normalized").contains("normalized"));
        let odd = saved.replacen("\"symlink\"", "\"socket\"", 1);
        assert!(refused(odd, "unknown type").contains("socket"));
    }

    #[test]
    fn a_whiteout_under_a_file_is_refused() {
        let mut f = Fixture::new();
        f.apply(Layer::default().file("f", "x")).unwrap();
        let e = f
            .apply(Layer::default().file("f/.wh.x", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/f is not a directory"), "{e}");
        let e = f
            .apply(Layer::default().file("d/.wh...", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("whiteout names no entry"), "{e}");
    }

    #[test]
    fn specials_are_recorded_and_never_created() {
        let mut f = Fixture::new();
        let mut h = tar::Header::new_gnu();
        h.set_path("dev/null").unwrap();
        h.set_entry_type(EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &[][..]).unwrap();
        f.tree
            .apply(&b.into_inner().unwrap()[..], "layer L")
            .unwrap();
        assert_eq!(
            f.kind("/dev/null"),
            Some(EntryKind::Special {
                kind: SpecialKind::CharDevice,
                major: 1,
                minor: 3
            })
        );
        assert!(!f.on_disk("/dev/null"));
    }

    #[test]
    fn pax_xattrs_owners_and_long_names_are_kept() {
        let mut f = Fixture::new();
        let long = format!("usr/{}/file", "n".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.security.capability", &b"\x01\x02"[..]),
            ("SCHILY.xattr.user.a", &b"v"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(42);
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        f.tree
            .apply(&b.into_inner().unwrap()[..], "layer L")
            .unwrap();
        let e = f.tree.get(&path(&long)).unwrap();
        assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o4755, 1000, 1001, 42));
        assert_eq!(
            e.xattrs,
            [
                ("security.capability".to_string(), b"\x01\x02".to_vec()),
                ("user.a".to_string(), b"v".to_vec())
            ]
        );
        // On disk: readable by us, no set-id bit before the owners are set.
        let mode = std::fs::metadata(f.tree.host_path(&path(&long)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn oversized_extension_headers_are_refused_before_they_are_read_whole() {
        let mut f = Fixture::new();
        let pax = vec![b'a'; (MAX_HEADERS + 4096) as usize];
        let layer = Layer::default()
            .add("pax", EntryType::XHeader, "", &pax, 0o644)
            .file("x", "x");
        let e = f.apply(layer).unwrap_err().to_string();
        assert!(
            e.contains("headers") && e.starts_with("apply layer L: read tar: "),
            "{e}"
        );
    }

    /// The inputs the fuzzer found (tests/regressions/apply_layer, as
    /// fuzz/fuzz_targets/apply_layer.rs reads them: two bytes of the first
    /// layer's length, then the layers) end in Ok or a one-line error.
    #[test]
    fn fuzzer_regressions_end_in_one_line_errors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions/apply_layer");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            let (first, second) = match &data[..] {
                [a, b, rest @ ..] => {
                    rest.split_at((u16::from_le_bytes([*a, *b]) as usize).min(rest.len()))
                }
                _ => (&data[..], &[][..]),
            };
            let mut f = Fixture::new();
            for layer in [first, second] {
                if let Err(e) = f.tree.apply(layer, "layer L") {
                    assert!(!e.to_string().contains(char::is_control), "{e}");
                }
            }
            n += 1;
        }
        assert!(n > 0);
    }

    #[test]
    fn the_root_must_be_empty() {
        let f = Fixture::new();
        let e = Tree::new(f.tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
    }
}
