//! A base's layers applied once and kept in the cache, so that a build on
//! a base pays for unpacking it only the first time.
//!
//! The key is a SHA-256 over the tree format and the base's diff_ids in
//! order: the uncompressed layers decide the tree, whatever their
//! compression or source. `trees/<key>/` holds `rootfs/` (the files, as
//! [`Tree::apply`] writes them) and `tree.json` (the entries as
//! [`Tree::saved`] gives them, with each entry's on-disk stamp: device,
//! inode, size, mtime and ctime), behind a line with its CRC-32. It is
//! made in a temporary directory beside it and renamed into place, so a
//! build sees a whole tree or none. A build trusts a stored tree only when
//! the CRC matches and every entry on disk has the stamp it had when it
//! was written (a file or directory changed, added or removed since has
//! another ctime or mtime); otherwise the tree is unpacked again.
//!
//! Nothing writes into a stored tree once it is in place: `[base] remove`
//! hides paths from the tree's map ([`Tree::forget`]), and the loader hides
//! them from its view of the disk.

use std::fs;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::cache::{parse_tree_header, tree_header, TREES, TREE_FILE};
use crate::digest::{Digest, Stamp};
use crate::error::{Error, Result};
use crate::oci::apply::{EntryKind, Saved};
use crate::oci::Tree;

/// A base's applied tree, and whether it is the cache's (kept) or this
/// build's own (removed when the value goes).
pub struct Unpacked {
    tree: Tree,
    tmp: Option<tempfile::TempDir>,
}

impl Unpacked {
    /// The tree, and its temporary directory when it is not the cache's.
    pub fn into_parts(self) -> (Tree, Option<tempfile::TempDir>) {
        (self.tree, self.tmp)
    }
}

/// What `tree.json` holds below its first line.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    tree: Saved,
    /// The root's stamp on disk, then each entry's in the tree's order
    /// (zeros for a special file, which is never on disk).
    stamps: Vec<[i64; 7]>,
}

/// The tree of the layers whose diff_ids are `diff_ids`: the cache's when
/// it holds a sound one, else made by `unpack` (applying every layer into
/// the empty tree it is given) and stored in the cache when there is one.
pub fn open(
    cache: Option<&Path>,
    diff_ids: &[Digest],
    unpack: impl FnOnce(&mut Tree) -> Result<()>,
) -> Result<Unpacked> {
    let Some(cache) = cache else {
        return unpack_into_temp(None, unpack);
    };
    let trees = cache.join(TREES);
    let dir = trees.join(key(diff_ids));
    if let Some(tree) = load(&dir) {
        let _ = crate::cache::touch(&dir.join(TREE_FILE));
        return Ok(Unpacked { tree, tmp: None });
    }
    // Missing or unsound: make it anew beside the old one, then swap.
    if fs::create_dir_all(&trees).is_err() {
        return unpack_into_temp(None, unpack);
    }
    let mut made = unpack_into_temp(Some(&trees), unpack)?;
    let Some(tmp) = made.tmp.as_ref() else {
        return Ok(made);
    };
    if store(tmp.path(), &made.tree).is_err() {
        return Ok(made);
    }
    if dir.exists() {
        // Looked at again: another build may have stored a sound one
        // since, and may be using it.
        if load(&dir).is_some() {
            return Ok(made);
        }
        // An unsound tree: moved aside first, so no build ever sees half
        // of one removed.
        let aside = trees.join(format!(".tmp-old-{}", std::process::id()));
        if fs::rename(&dir, &aside).is_ok() {
            let _ = fs::remove_dir_all(&aside);
        }
    }
    if fs::rename(tmp.path(), &dir).is_err() {
        // Another build stored the same tree first: this one stays ours.
        return Ok(made);
    }
    // The temporary directory is the cache's entry now: not removed.
    let _ = made.tmp.take().map(tempfile::TempDir::keep);
    made.tree.move_root(&dir.join("rootfs"));
    Ok(made)
}

/// `sha256(format, diff_ids)` in hex: the directory a tree is stored in.
fn key(diff_ids: &[Digest]) -> String {
    let mut h = Sha256::new();
    h.update(crate::cache::TREE_FORMAT.as_bytes());
    for d in diff_ids {
        h.update(b"\n");
        h.update(d.to_string().as_bytes());
    }
    crate::digest::hex(&h.finalize())
}

/// A fresh tree made by `unpack` in a temporary directory (under `parent`,
/// else the system's).
fn unpack_into_temp(
    parent: Option<&Path>,
    unpack: impl FnOnce(&mut Tree) -> Result<()>,
) -> Result<Unpacked> {
    let system = || {
        tempfile::Builder::new()
            .prefix("bareroot-base-")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))
    };
    // A cache that cannot be written to is only a slower build.
    let tmp = match parent {
        Some(p) => match tempfile::Builder::new().prefix(".tmp-").tempdir_in(p) {
            Ok(t) => t,
            Err(_) => system()?,
        },
        None => system()?,
    };
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir(&rootfs).map_err(|e| Error::io("create directory", &rootfs, e))?;
    let mut tree = Tree::new(&rootfs)?;
    unpack(&mut tree)?;
    Ok(Unpacked {
        tree,
        tmp: Some(tmp),
    })
}

/// Write `tree.json` for the tree under `dir/rootfs`.
fn store(dir: &Path, tree: &Tree) -> Result<()> {
    let stamps = stamps(tree).ok_or_else(|| {
        Error::msg(format!(
            "store unpacked base {}: an entry is missing",
            dir.display()
        ))
    })?;
    let bytes = tree
        .entries()
        .values()
        .map(|e| match e.kind {
            EntryKind::File { size } => size,
            _ => 0,
        })
        .sum();
    let body = serde_json::to_vec(&Stored {
        tree: tree.saved(),
        stamps,
    })
    .map_err(|e| Error::msg(format!("store unpacked base {}: {e}", dir.display())))?;
    let file = dir.join(TREE_FILE);
    let mut f = fs::File::create(&file).map_err(|e| Error::io("create", &file, e))?;
    let header = tree_header(crc32fast::hash(&body), bytes);
    f.write_all(header.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.write_all(&body))
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io("write", &file, e))
}

/// The stored tree at `dir`, if it is whole and its files are as stored.
fn load(dir: &Path) -> Option<Tree> {
    let raw = fs::read(dir.join(TREE_FILE)).ok()?;
    let nl = raw.iter().position(|&b| b == b'\n')?;
    let (crc, _) = parse_tree_header(std::str::from_utf8(&raw[..nl]).ok()?)?;
    let body = &raw[nl + 1..];
    if crc32fast::hash(body) != crc {
        return None;
    }
    let stored: Stored = serde_json::from_slice(body).ok()?;
    let tree = Tree::from_saved(&dir.join("rootfs"), stored.tree).ok()?;
    (stamps(&tree)? == stored.stamps).then_some(tree)
}

/// The stamp on disk of the root, then of every entry in order (None if
/// one is missing).
fn stamps(tree: &Tree) -> Option<Vec<[i64; 7]>> {
    let root = fs::symlink_metadata(tree.root()).ok()?;
    let entries: Vec<_> = tree.entries().iter().collect();
    let mut all = vec![Stamp::of(&root).fields()];
    let each: Option<Vec<[i64; 7]>> = entries
        .par_iter()
        .map(|(path, e)| match e.kind {
            EntryKind::Special { .. } => Some([0; 7]),
            _ => fs::symlink_metadata(tree.host_path(path))
                .ok()
                .map(|m| Stamp::of(&m).fields()),
        })
        .collect();
    all.extend(each?);
    Some(all)
}
