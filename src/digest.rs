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
//! versioned ([`save`] says how it is laid out) and checked whole (CRC-32)
//! on load; a file that fails any check is an empty cache.

use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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
}

/// A file by path (its bytes, hashed fast) and stamp.
type Key = (OsString, Stamp);

/// What this process knows of one file's content, and whether this build
/// used it (looked it up or computed it): only used entries are saved.
struct Known {
    stamp: Stamp,
    digests: Arc<Digests>,
    /// The file's first bytes, when a probe read them at this stamp.
    head: Option<Head>,
    used: bool,
    /// Whether this process saw the file at this stamp (a stat that
    /// matched, or the read that hashed it).
    checked: bool,
}

/// The first bytes of a file (at most [`HEAD_LEN`]; fewer only when the file
/// is shorter), as a probe that tells programs from data reads them: kept in
/// the stat cache, so an unchanged file is not opened again to be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    len: u8,
    bytes: [u8; HEAD_LEN],
}

/// How many first bytes of a file a [`Head`] holds.
pub const HEAD_LEN: usize = 20;

impl Head {
    /// The first bytes of a file: `bytes` (cut at [`HEAD_LEN`]).
    pub fn new(bytes: &[u8]) -> Head {
        let len = bytes.len().min(HEAD_LEN);
        let mut h = Head {
            len: len as u8,
            bytes: [0; HEAD_LEN],
        };
        h.bytes[..len].copy_from_slice(&bytes[..len]);
        h
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[derive(Default)]
struct Memo {
    /// By path: what is known of the file as it was at one stamp.
    files: rustc_hash::FxHashMap<OsString, Known>,
    /// Entries read from the stat cache file, and how many of them this
    /// build used: the file is rewritten only when it would change.
    loaded: usize,
    loaded_used: usize,
    /// Digests learnt that the stat cache file does not have.
    learnt: bool,
    /// Whether there is a stat cache to keep heads for ([`load`] was
    /// called), and the heads probed of files whose digests are not known
    /// yet (the layer pass learns them).
    keep_heads: bool,
    probed: rustc_hash::FxHashMap<OsString, (Stamp, Head)>,
}

fn memo() -> std::sync::MutexGuard<'static, Memo> {
    static M: OnceLock<Mutex<Memo>> = OnceLock::new();
    M.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The digests of the file at `path` when this process (or the stat cache)
/// already knows them for its current stamp.
pub fn known(path: &Path, meta: &Metadata) -> Option<Arc<Digests>> {
    let mut m = memo();
    let k = m
        .files
        .get_mut(path.as_os_str())
        .filter(|k| k.stamp == Stamp::of(meta))?;
    let first_use = !k.used;
    k.used = true;
    k.checked = true;
    let d = k.digests.clone();
    if first_use {
        m.loaded_used += 1;
    }
    Some(d)
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
        checked: true,
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
/// file counts as used by this build.
pub fn known_head(path: &Path, meta: &Metadata) -> Option<Head> {
    let mut m = memo();
    let k = m
        .files
        .get_mut(path.as_os_str())
        .filter(|k| k.stamp == Stamp::of(meta))?;
    let head = k.head?;
    let first_use = !k.used;
    k.used = true;
    k.checked = true;
    if first_use {
        m.loaded_used += 1;
    }
    Some(head)
}

/// Whether the stat cache file had any entries: without, looking a file
/// up costs a stat for nothing.
pub fn any_loaded() -> bool {
    memo().loaded > 0
}

/// Record the first bytes of the file at `path` as a probe read them when
/// `stamp` was taken, for the stat cache (nothing without one).
pub fn note_head(path: &Path, stamp: Stamp, head: Head) {
    let mut m = memo();
    if !m.keep_heads {
        return;
    }
    match m.files.get_mut(path.as_os_str()) {
        Some(k) if k.stamp == stamp => {
            if k.head != Some(head) {
                k.head = Some(head);
                m.learnt = true;
            }
        }
        _ => {
            m.probed.insert(path.as_os_str().to_owned(), (stamp, head));
        }
    }
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
pub fn all_known(paths: &[PathBuf]) -> Option<Inputs> {
    use rayon::prelude::*;
    let checked = |p: &Path| {
        let m = memo();
        let k = m.files.get(p.as_os_str()).filter(|k| k.checked)?;
        Some(k.digests.clone())
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
/// At most this many entries in one file (the first ones in path order).
const MAX_STAT_ENTRIES: usize = 4_000_000;
/// The first bytes of a stat cache file, then its format version.
const STAT_MAGIC: &[u8; 12] = b"bareroot-st\0";
const STAT_VERSION: u32 = 2;
/// Bytes per entry after its path: the stamp (7 × i64), SHA-1, SHA-256,
/// the head's length (or [`NO_HEAD`]) and its bytes (zero-padded).
const STAT_FIXED: usize = 7 * 8 + 20 + 32 + 1 + HEAD_LEN;
/// The head length of an entry whose head is not known.
const NO_HEAD: u8 = 0xff;

/// Load the stat cache file written by [`save`]; a missing file, or one
/// that fails any check (magic, version, CRC-32, lengths), is an empty
/// cache.
pub fn load(file: &Path) {
    memo().keep_heads = true;
    let Ok(bytes) = std::fs::read(file) else {
        return;
    };
    let Some(entries) = decode(&bytes) else {
        return;
    };
    let mut m = memo();
    m.loaded += entries.len();
    m.files.reserve(entries.len());
    for ((path, stamp), digests, head) in entries {
        let known = Known {
            stamp,
            digests: Arc::new(digests),
            head,
            used: false,
            checked: false,
        };
        m.files.entry(path).or_insert(known);
    }
}

fn decode(bytes: &[u8]) -> Option<Vec<(Key, Digests, Option<Head>)>> {
    use std::os::unix::ffi::OsStrExt;
    let body_len = bytes.len().checked_sub(4)?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let rest = body.strip_prefix(STAT_MAGIC.as_slice())?;
    let (version, rest) = rest.split_first_chunk::<4>()?;
    let (count, mut rest) = rest.split_first_chunk::<8>()?;
    if u32::from_le_bytes(*version) != STAT_VERSION {
        return None;
    }
    let count = usize::try_from(u64::from_le_bytes(*count)).ok()?;
    if count > MAX_STAT_ENTRIES {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut path: Vec<u8> = Vec::new();
    for _ in 0..count {
        let (shared, r) = rest.split_first_chunk::<2>()?;
        let (suffix_len, r) = r.split_first_chunk::<2>()?;
        let shared = usize::from(u16::from_le_bytes(*shared));
        let suffix_len = usize::from(u16::from_le_bytes(*suffix_len));
        if shared > path.len() || r.len() < suffix_len + STAT_FIXED {
            return None;
        }
        path.truncate(shared);
        path.extend_from_slice(&r[..suffix_len]);
        let fixed = &r[suffix_len..suffix_len + STAT_FIXED];
        let mut stamp = [0i64; 7];
        for (i, s) in stamp.iter_mut().enumerate() {
            *s = i64::from_le_bytes(fixed[i * 8..i * 8 + 8].try_into().ok()?);
        }
        let digests = Digests {
            sha1: fixed[56..76].try_into().ok()?,
            sha256: fixed[76..108].try_into().ok()?,
        };
        let head = match fixed[108] {
            NO_HEAD => None,
            n if usize::from(n) <= HEAD_LEN => Some(Head::new(&fixed[109..109 + usize::from(n)])),
            _ => return None,
        };
        let p = std::ffi::OsStr::from_bytes(&path).to_owned();
        out.push(((p, Stamp(stamp)), digests, head));
        rest = &r[suffix_len + STAT_FIXED..];
    }
    rest.is_empty().then_some(out)
}

/// Save the digests this build used (looked up or computed; at most
/// [`MAX_STAT_ENTRIES`], the first in path order) to `file` for the next
/// build of the same recipe, through a temporary file renamed into place.
/// Nothing is written when the file would not change. Then the oldest stat
/// cache files beyond [`MAX_STAT_FILES`] are removed, and the JSON stat
/// cache of earlier versions (`digests.json`) with them.
///
/// The file (all integers little-endian): `bareroot-st\0`, the version
/// (u32), the entry count (u64); per entry, in path order, the length of
/// the path's prefix shared with the previous entry's (u16), the rest's
/// length (u16) and bytes, the stamp (7 × i64), SHA-1 (20 bytes), SHA-256
/// (32 bytes), the length of the file's head (u8; 255: not known) and
/// [`HEAD_LEN`] bytes holding it, zero-padded; then the CRC-32 of
/// everything before it (u32).
pub fn save(file: &Path) {
    let Some(dir) = file.parent() else { return };
    let m = memo();
    let unchanged = !m.learnt && m.loaded_used == m.loaded && file.exists();
    if unchanged {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let mut used: Vec<Entry> = m
        .files
        .iter()
        // Longer than any path Linux opens: not kept.
        .filter(|(path, k)| k.used && path.as_bytes().len() <= MAX_STAT_PATH)
        .map(|(path, k)| (path, k.stamp, &*k.digests, k.head))
        .collect();
    used.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    used.truncate(MAX_STAT_ENTRIES);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    let written = {
        let mut w = Crc32Writer {
            out: std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
            crc: crc32fast::Hasher::new(),
        };
        encode(&used, &mut w).and_then(|()| w.finish())
    };
    let count = used.len();
    drop(used);
    drop(m);
    if written.is_ok() && tmp.persist(file).is_ok() {
        let mut m = memo();
        m.learnt = false;
        m.loaded = count;
        m.loaded_used = count;
    }
    trim_stat_files(dir);
}

/// A writer that keeps the CRC-32 of what passed through it and appends it
/// when finished.
struct Crc32Writer<W: std::io::Write> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: std::io::Write> std::io::Write for Crc32Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: std::io::Write> Crc32Writer<W> {
    fn finish(mut self) -> std::io::Result<()> {
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()
    }
}

/// One entry as saved: path, stamp, digests, head.
type Entry<'a> = (&'a OsString, Stamp, &'a Digests, Option<Head>);

/// The longest path a stat cache entry holds (its length is a u16).
const MAX_STAT_PATH: usize = u16::MAX as usize;

/// Write `entries` (sorted by path, none longer than [`MAX_STAT_PATH`]) in
/// the stat cache format, all but the trailing CRC-32.
fn encode(entries: &[Entry], out: &mut impl std::io::Write) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    out.write_all(STAT_MAGIC)?;
    out.write_all(&STAT_VERSION.to_le_bytes())?;
    out.write_all(&(entries.len() as u64).to_le_bytes())?;
    let mut prev: &[u8] = &[];
    for (path, stamp, d, head) in entries {
        let p = path.as_bytes();
        let shared = p.iter().zip(prev).take_while(|(a, b)| a == b).count();
        // Both fit in a u16: no path is longer than MAX_STAT_PATH.
        out.write_all(&(shared as u16).to_le_bytes())?;
        out.write_all(&((p.len() - shared) as u16).to_le_bytes())?;
        out.write_all(&p[shared..])?;
        for s in stamp.0 {
            out.write_all(&s.to_le_bytes())?;
        }
        out.write_all(&d.sha1)?;
        out.write_all(&d.sha256)?;
        match head {
            Some(h) => {
                out.write_all(&[h.len])?;
                out.write_all(&h.bytes)?;
            }
            None => out.write_all(&[NO_HEAD; 1 + HEAD_LEN])?,
        }
        prev = p;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(Key, Digests, Option<Head>)> {
        ["/usr/lib/a.so", "/usr/lib/ab.so", "/usr/lib/b/c", "/x"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let n = i as u8;
                let stamp = Stamp([i as i64, -1, 7, 1_700_000_000, 5, i64::MAX, 0]);
                let d = Digests {
                    sha1: [n; 20],
                    sha256: [n + 100; 32],
                };
                // Known heads of every length a head has, and none.
                let head = (i != 2).then(|| {
                    Head::new(
                        &b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0"[..[0, 7, 0, 20][i]],
                    )
                });
                ((OsString::from(p), stamp), d, head)
            })
            .collect()
    }

    fn encoded() -> Vec<u8> {
        let e = entries();
        let refs: Vec<Entry> = e.iter().map(|((p, s), d, h)| (p, *s, d, *h)).collect();
        let mut w = Crc32Writer {
            out: Vec::new(),
            crc: crc32fast::Hasher::new(),
        };
        encode(&refs, &mut w).unwrap();
        let crc = w.crc.clone().finalize();
        let mut out = w.out;
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn the_stat_cache_format_round_trips_with_shared_prefixes() {
        let bytes = encoded();
        assert!(bytes.starts_with(STAT_MAGIC));
        assert_eq!(decode(&bytes), Some(entries()));
        // Front coding: "/usr/lib/ab.so" is stored as 9 shared bytes + "ab.so".
        let plain: usize = entries().iter().map(|((p, _), _, _)| p.len()).sum();
        assert!(bytes.len() < 24 + 4 * (4 + STAT_FIXED) + plain);
    }

    #[test]
    fn a_damaged_truncated_or_other_version_stat_cache_is_refused() {
        let good = encoded();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), None, "byte {i} flipped");
        }
        for n in 0..good.len() {
            assert_eq!(decode(&good[..n]), None, "cut at {n}");
        }
        // A right CRC over a wrong version (a later bareroot's file).
        let mut other = good[..good.len() - 4].to_vec();
        other[STAT_MAGIC.len()] = 1;
        let crc = crc32fast::hash(&other);
        other.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&other), None);
    }
}
