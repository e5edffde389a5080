//! The digest vocabulary: [`Digest`], a checked `sha256:<hex>` content
//! address (every descriptor, layer and blob name), and the content digests
//! of input files, computed once per file and process:
//! SHA-1 and SHA-256 (SPDX, the layer cache key). The layer pass computes
//! them while it reads each file for the tar stream ([`remember`]), so a
//! cold build reads every input once; [`of`] computes them on its own for a
//! file the layer pass did not read.
//!
//! With a layer cache, the digests also persist between builds in a stat
//! cache: an entry is used only when the file's path, device, inode, size,
//! mtime and ctime (which no user can set back) are all unchanged; on any
//! doubt the file is read and hashed again. `--no-cache` neither reads nor
//! writes the stat cache.
//!
//! The stat cache has one file per recipe (`stat/<hash of the recipe's
//! path>.bin` in the cache directory), holding the digests of exactly the
//! files that recipe's last build used: a build loads and rewrites only its
//! own inputs, whatever else was built before. The file is compact and
//! versioned ([`crate::statcache`] says how it is laid out) and checked
//! whole (CRC-32) on load; a file that fails any check is an empty cache.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::statcache::{self, Rec, Table};
pub use crate::statcache::{Head, HEAD_LEN};

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::error::{IoResultExt, Result};

/// A content address, "sha256:" + 64 lowercase hex digits: parsed and
/// checked once (from JSON, a reference or a hash), so code that holds one
/// never checks it again, and its hex part is always safe as a file name.
/// It serializes as the same string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// The only algorithm bareroot writes or accepts.
    const PREFIX: &'static str = "sha256:";

    /// The sha256 digest of bytes in memory.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(bytes).as_slice())
    }

    /// The digest whose hash is `hash` (32 bytes of sha256 output).
    pub fn from_sha256(hash: &[u8]) -> Digest {
        debug_assert_eq!(hash.len(), 32);
        Digest(format!("{}{}", Digest::PREFIX, hex(hash)))
    }

    /// Parse "sha256:<64 lowercase hex>"; the error says what was wrong.
    pub fn parse(s: &str) -> std::result::Result<Digest, String> {
        let ok = s.strip_prefix(Digest::PREFIX).is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Digest(s.to_string()))
        } else {
            Err(format!(
                "invalid digest {s:?}: expected sha256:<64 lowercase hex digits>"
            ))
        }
    }

    /// "sha256:<hex>".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits: a blob's file name under `blobs/sha256/`.
    pub fn hex(&self) -> &str {
        &self.0[Digest::PREFIX.len()..]
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s).map_err(crate::Error::msg)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Every input file's digests as the layer pass read them, by source path
/// (its bytes: looked up once per plan entry, so hashed, not ordered).
pub type Inputs = rustc_hash::FxHashMap<OsString, Arc<Digests>>;

/// The digests of one file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
}

/// What identifies a file's content without reading it: device, inode,
/// size, mtime and ctime (seconds and nanoseconds). A file rewritten in
/// place, even to the same size, gets a new ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp([i64; 7]);

impl Stamp {
    pub fn of(m: &Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp([
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ])
    }

    /// Device, inode, size, mtime (s, ns), ctime (s, ns).
    pub fn fields(&self) -> [i64; 7] {
        self.0
    }
}

/// What this process learnt of one file's content, and whether this build
/// used it (looked it up or computed it): only used entries are saved.
struct Known {
    stamp: Stamp,
    digests: Arc<Digests>,
    /// The file's first bytes, when a probe read them at this stamp.
    head: Option<Head>,
    used: bool,
}

#[derive(Default)]
struct Memo {
    /// By path: what this process learnt of a file as it was at one stamp
    /// (it wins over the stat cache file's entry of the same path).
    files: rustc_hash::FxHashMap<OsString, Known>,
    /// The stat cache file as loaded, used in place.
    table: Table,
    /// Digests or heads learnt that the stat cache file does not have.
    learnt: bool,
    /// Whether there is a stat cache to keep heads for ([`load`] was
    /// called), and the heads probed of files whose digests are not known
    /// yet (the layer pass learns them).
    keep_heads: bool,
    probed: rustc_hash::FxHashMap<OsString, (Stamp, Head)>,
    /// Trees whose files are not to be saved ([`forget_under`]).
    forgotten: Vec<PathBuf>,
}

fn memo() -> std::sync::MutexGuard<'static, Memo> {
    static M: OnceLock<Mutex<Memo>> = OnceLock::new();
    M.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl Memo {
    /// The digests and head of `path` at `stamp`, from what this process
    /// learnt or else the stat cache file, marked used (and seen at their
    /// stamp when `checked`).
    fn lookup(
        &mut self,
        path: &Path,
        stamp: Stamp,
        checked: bool,
    ) -> Option<(Arc<Digests>, Option<Head>)> {
        use std::os::unix::ffi::OsStrExt;
        if let Some(k) = self.files.get_mut(path.as_os_str()) {
            if k.stamp == stamp {
                k.used = true;
                return Some((k.digests.clone(), k.head));
            }
            return None;
        }
        let at = self.table.find(path.as_os_str().as_bytes())?;
        if self.table.stamp(at) != stamp.fields() {
            return None;
        }
        self.table.mark(at, checked);
        let rec = self.table.rec(at);
        Some((Arc::new(digests_of(&rec)), rec.head))
    }
}

/// The digests a stat cache entry holds.
fn digests_of(rec: &Rec) -> Digests {
    Digests {
        sha1: rec.sha1,
        sha256: rec.sha256,
    }
}

/// The digests of the file at `path` when this process (or the stat cache)
/// already knows them for its current stamp.
pub fn known(path: &Path, meta: &Metadata) -> Option<Arc<Digests>> {
    memo().lookup(path, Stamp::of(meta), true).map(|(d, _)| d)
}

/// Record digests computed elsewhere (the layer pass) for `path` as it was
/// when `stamp` was taken.
pub fn remember(path: &Path, stamp: Stamp, d: Digests) {
    let mut m = memo();
    let head = match m.probed.remove(path.as_os_str()) {
        Some((s, head)) if s == stamp => Some(head),
        _ => None,
    };
    let known = Known {
        stamp,
        digests: Arc::new(d),
        head,
        used: true,
    };
    if let Some(old) = m.files.insert(path.as_os_str().to_owned(), known) {
        // The same digests again (two threads racing) change nothing.
        if old.used && old.stamp == stamp {
            if let Some(k) = m.files.get_mut(path.as_os_str()) {
                k.head = k.head.or(old.head);
            }
            return;
        }
    }
    m.learnt = true;
}

/// The first bytes of the file at `path` when the stat cache has them for
/// its current stamp (`meta`, its metadata not following a symlink). The
/// file counts as used by this build, and as seen at that stamp.
pub fn known_head(path: &Path, meta: &Metadata) -> Option<Head> {
    memo().lookup(path, Stamp::of(meta), true)?.1
}

/// Whether the stat cache file had any entries: without, looking a file
/// up costs a stat for nothing.
pub fn any_loaded() -> bool {
    !memo().table.is_empty()
}

/// Record the first bytes of the file at `path` as a probe read them when
/// `stamp` was taken, for the stat cache (nothing without one).
pub fn note_head(path: &Path, stamp: Stamp, head: Head) {
    use std::os::unix::ffi::OsStrExt;
    let mut m = memo();
    if !m.keep_heads {
        return;
    }
    if let Some(k) = m.files.get_mut(path.as_os_str()) {
        if k.stamp == stamp {
            if k.head != Some(head) {
                k.head = Some(head);
                m.learnt = true;
            }
            return;
        }
    } else if let Some(at) = m.table.find(path.as_os_str().as_bytes()) {
        if m.table.stamp(at) == stamp.fields() {
            if m.table.set_head(at, head) {
                m.learnt = true;
            }
            return;
        }
    }
    m.probed.insert(path.as_os_str().to_owned(), (stamp, head));
}

/// Forget what is known of files under `prefix` (a temporary tree about to
/// be removed), so the stat cache does not keep paths that will not come
/// back.
pub fn forget_under(prefix: &Path) {
    let mut m = memo();
    let before = m.files.len();
    m.files
        .retain(|path, _| !Path::new(path).starts_with(prefix));
    if m.files.len() != before {
        m.learnt = true;
    }
    m.forgotten.push(prefix.to_path_buf());
}

/// The digests of the file at `path` (a host path), computed on first use.
pub fn of(path: &Path) -> Result<Arc<Digests>> {
    let m = std::fs::metadata(path).with_path("stat", path)?;
    if let Some(d) = known(path, &m) {
        return Ok(d);
    }
    let d = compute(path)?;
    remember(path, Stamp::of(&m), d.clone());
    Ok(Arc::new(d))
}

/// Where a step takes input digests from: the layer pass's record of what
/// it read ([`Inputs`]), else the files as they are now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Source<'a> {
    pub read: Option<&'a Inputs>,
}

impl Source<'_> {
    /// The digests of `path`: as the layer pass read it when it did, else
    /// [`of`] (the file now).
    pub fn get(&self, path: &Path) -> Result<Arc<Digests>> {
        match self.read.and_then(|r| r.get(path.as_os_str())) {
            Some(d) => Ok(d.clone()),
            None => of(path),
        }
    }
}

/// The digests of every one of `paths` when all are known (so a cache key
/// can be made without reading any file): those this process already saw
/// at the stamp it knows them for are not looked at again (the probe that
/// told them program or data did), the others are stat'ed in parallel.
pub fn all_known(paths: &[&Path]) -> Option<Inputs> {
    use rayon::prelude::*;
    let checked = |p: &Path| {
        use std::os::unix::ffi::OsStrExt;
        let mut m = memo();
        if m.files.contains_key(p.as_os_str()) {
            return None;
        }
        let at = m.table.find(p.as_os_str().as_bytes())?;
        if !m.table.checked(at) {
            return None;
        }
        m.table.mark(at, true);
        Some(Arc::new(digests_of(&m.table.rec(at))))
    };
    let found: Option<Vec<Arc<Digests>>> = paths
        .par_iter()
        .map(|p| checked(p).or_else(|| std::fs::metadata(p).ok().and_then(|m| known(p, &m))))
        .collect();
    Some(
        paths
            .iter()
            .map(|p| p.as_os_str().to_owned())
            .zip(found?)
            .collect(),
    )
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// Lowercase or uppercase hex of exactly N bytes → the bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The stat cache file of the recipe at `recipe` (its path, made absolute)
/// under the cache directory `root`.
pub fn stat_cache_file(root: &Path, recipe: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(recipe).unwrap_or_else(|_| recipe.to_path_buf());
    let h = Sha256::digest(abs.as_os_str().as_bytes());
    root.join(STAT_DIR).join(format!("{}.bin", hex(&h[..16])))
}

/// The stat cache's directory under the cache directory.
const STAT_DIR: &str = "stat";
/// At most this many recipes keep a stat cache file; the least recently
/// saved go first.
const MAX_STAT_FILES: usize = 64;

/// Load the stat cache file written by [`save`] ([`crate::statcache`] says
/// how it is laid out); a missing file, or one that fails any check, is an
/// empty cache.
pub fn load(file: &Path) {
    let table = Table::load(file);
    let mut m = memo();
    m.keep_heads = true;
    m.table = table;
}

/// Save the digests this build used (looked up or computed; at most
/// [`statcache::MAX_ENTRIES`], the first in path order) to `file` for the
/// next build of the same recipe, through a temporary file renamed into
/// place. Nothing is written when the file would not change. Then the
/// oldest stat cache files beyond [`MAX_STAT_FILES`] are removed, and the
/// JSON stat cache of earlier versions (`digests.json`) with them.
pub fn save(file: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Some(dir) = file.parent() else { return };
    let mut m = memo();
    let unchanged = !m.learnt && m.table.used() == m.table.len() && file.exists();
    if unchanged {
        return;
    }
    let forgotten = |p: &[u8]| {
        m.forgotten
            .iter()
            .any(|f| Path::new(std::ffi::OsStr::from_bytes(p)).starts_with(f))
    };
    // Learnt this process (winning over the file's entry of the same
    // path), merged in path order with the file's used entries.
    let mut learnt: Vec<(&[u8], Rec)> = m
        .files
        .iter()
        .filter(|(_, k)| k.used)
        .map(|(p, k)| {
            let rec = Rec {
                stamp: k.stamp.fields(),
                sha1: k.digests.sha1,
                sha256: k.digests.sha256,
                head: k.head,
            };
            (p.as_bytes(), rec)
        })
        .filter(|(p, _)| p.len() <= statcache::MAX_PATH && !forgotten(p))
        .collect();
    learnt.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let kept = || {
        m.table
            .used_entries()
            .filter(|(p, _)| !m.files.contains_key(std::ffi::OsStr::from_bytes(p)) && !forgotten(p))
    };
    let merged = || merge(kept(), learnt.iter().map(|(p, r)| (*p, r.clone())));
    let count = merged().count().min(statcache::MAX_ENTRIES);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    let written = statcache::write(
        count,
        merged(),
        std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
    );
    drop(learnt);
    if written.is_ok() && tmp.persist(file).is_ok() {
        // Saved: a later save in this process writes only what is
        // learnt or looked up after this (a lookup now finds nothing and
        // computes again).
        m.learnt = false;
        m.table = Table::default();
        m.files.clear();
    }
    drop(m);
    trim_stat_files(dir);
}

/// Two iterators of entries in increasing path order, merged (the second
/// wins on an equal path).
fn merge<'a>(
    a: impl Iterator<Item = (&'a [u8], Rec)>,
    b: impl Iterator<Item = (&'a [u8], Rec)>,
) -> impl Iterator<Item = (&'a [u8], Rec)> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) => match x.0.cmp(y.0) {
            std::cmp::Ordering::Less => a.next(),
            std::cmp::Ordering::Greater => b.next(),
            std::cmp::Ordering::Equal => {
                a.next();
                b.next()
            }
        },
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// Keep the [`MAX_STAT_FILES`] most recently saved stat cache files in
/// `dir`; remove the JSON stat cache of earlier versions beside it.
fn trim_stat_files(dir: &Path) {
    if let Some(root) = dir.parent() {
        let _ = std::fs::remove_file(root.join("digests.json"));
    }
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = read
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= MAX_STAT_FILES {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - MAX_STAT_FILES] {
        let _ = std::fs::remove_file(p);
    }
}

/// Feed every byte of the file at `path` to `f`, in order.
pub(crate) fn read_through(path: &Path, mut f: impl FnMut(&[u8])) -> Result<()> {
    let mut file = File::open(path).with_path("open", path)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = file.read(&mut buf).with_path("read", path)?;
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n]);
    }
}

fn compute(path: &Path) -> Result<Digests> {
    let (mut s1, mut s2) = (Sha1::new(), Sha256::new());
    read_through(path, |b| {
        s1.update(b);
        s2.update(b);
    })?;
    Ok(Digests {
        sha1: s1.finalize().into(),
        sha256: s2.finalize().into(),
    })
}

/// The MD5 of a file (for dpkg md5sums lines dpkg itself has no record of).
pub fn md5_of(path: &Path) -> Result<[u8; 16]> {
    let mut h = md5::Md5::new();
    read_through(path, |b| h.update(b))?;
    Ok(h.finalize().into())
}
