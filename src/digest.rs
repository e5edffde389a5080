//! The digest vocabulary: [`Digest`], a checked `sha256:<hex>` content
//! address (every descriptor, layer and blob name), and the content digests
//! of input files, computed once per file and process:
//! SHA-1 and SHA-256 (SPDX, the layer cache key). The layer pass computes
//! them while it reads each file for the tar stream ([`remember`]), so a
//! cold build reads every input once; [`of`] computes them on its own for a
//! file the layer pass did not read.
//!
//! With a layer cache, the digests also persist between builds in a stat
//! cache (`digests.json` in the cache directory): an entry is used only
//! when the file's path, device, inode, size, mtime and ctime (which no
//! user can set back) are all unchanged; on any doubt the file is read and
//! hashed again. `--no-cache` neither reads nor writes the stat cache.

use std::collections::HashMap;
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

/// Every input file's digests as the layer pass read them, by source path.
pub type Inputs = std::collections::BTreeMap<PathBuf, Arc<Digests>>;

/// The digests of one file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
}

/// What identifies a file's content without reading it: device, inode,
/// size, mtime and ctime (seconds and nanoseconds). A file rewritten in
/// place, even to the same size, gets a new ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

type Key = (PathBuf, Stamp);

fn memo() -> &'static Mutex<HashMap<Key, Arc<Digests>>> {
    static M: OnceLock<Mutex<HashMap<Key, Arc<Digests>>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// The digests of the file at `path` when this process (or the stat cache)
/// already knows them for its current stamp.
pub fn known(path: &Path, meta: &Metadata) -> Option<Arc<Digests>> {
    memo()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(path.to_path_buf(), Stamp::of(meta)))
        .cloned()
}

/// Has this process learnt digests the stat cache file does not have?
static DIRTY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Record digests computed elsewhere (the layer pass) for `path` as it was
/// when `stamp` was taken.
pub fn remember(path: &Path, stamp: Stamp, d: Digests) {
    memo()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((path.to_path_buf(), stamp), Arc::new(d));
    DIRTY.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Forget what is known of files under `prefix` (a temporary tree about to
/// be removed), so the stat cache does not keep paths that will not come
/// back.
pub fn forget_under(prefix: &Path) {
    memo()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(path, _), _| !path.starts_with(prefix));
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
        match self.read.and_then(|r| r.get(path)) {
            Some(d) => Ok(d.clone()),
            None => of(path),
        }
    }
}

/// The digests of every one of `paths` when all are known (so a cache key
/// can be made without reading any file); the files are stat'ed in
/// parallel.
pub fn all_known(paths: &[PathBuf]) -> Option<Inputs> {
    use rayon::prelude::*;
    let found: Option<Vec<Arc<Digests>>> = paths
        .par_iter()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| known(p, &m)))
        .collect();
    Some(paths.iter().cloned().zip(found?).collect())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    path: PathBuf,
    stat: [i64; 7],
    sha1: String,
    sha256: String,
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

/// Load a stat cache written by [`save`]; a missing or damaged file is an
/// empty cache.
pub fn load(file: &Path) {
    let Ok(bytes) = std::fs::read(file) else {
        return;
    };
    let Ok(saved) = serde_json::from_slice::<Vec<Saved>>(&bytes) else {
        return;
    };
    let mut memo = memo().lock().unwrap_or_else(|e| e.into_inner());
    for s in saved {
        let (Some(sha1), Some(sha256)) = (unhex(&s.sha1), unhex(&s.sha256)) else {
            continue;
        };
        memo.insert((s.path, Stamp(s.stat)), Arc::new(Digests { sha1, sha256 }));
    }
}

/// Save the digests known to this process (at most `max` entries) for the
/// next build, through a temporary file renamed into place; nothing to do
/// when no file was hashed since [`load`].
pub fn save(file: &Path, max: usize) {
    if !DIRTY.swap(false, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let memo = memo().lock().unwrap_or_else(|e| e.into_inner());
    let mut saved: Vec<Saved> = memo
        .iter()
        .map(|((path, stamp), d)| Saved {
            path: path.clone(),
            stat: stamp.0,
            sha1: hex(&d.sha1),
            sha256: hex(&d.sha256),
        })
        .collect();
    drop(memo);
    saved.sort_by(|a, b| a.path.cmp(&b.path));
    saved.truncate(max);
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    use std::io::Write;
    if serde_json::to_writer(&mut tmp, &saved).is_ok() && tmp.flush().is_ok() {
        let _ = tmp.persist(file);
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
