//! Content digests of input files, computed once per file and process: one
//! read feeds MD5 (dpkg md5sums), SHA-1 and SHA-256 (SPDX, the layer cache
//! key), and `prefetch` computes them for many files in parallel.
//!
//! With a layer cache, the digests also persist between builds in a stat
//! cache (`digests.json` in the cache directory): an entry is used only
//! when the file's path, device, inode, size, mtime and ctime (which no
//! user can set back) are all unchanged; on any doubt the file is read and
//! hashed again.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{IoResultExt, Result};

/// The digests of one file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub md5: [u8; 16],
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
}

/// A file's identity for the memo: path, device, inode, size, mtime and
/// ctime, so a file rewritten in place is hashed again.
type Key = (PathBuf, u64, u64, u64, i64, i64, i64, i64);

fn memo() -> &'static Mutex<HashMap<Key, Arc<Digests>>> {
    static M: OnceLock<Mutex<HashMap<Key, Arc<Digests>>>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// The digests of the file at `path` (a host path), computed on first use.
pub fn of(path: &Path) -> Result<Arc<Digests>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_path("stat", path)?;
    let key = (
        path.to_path_buf(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    );
    if let Some(d) = memo().lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(d.clone());
    }
    let d = Arc::new(compute(path)?);
    memo()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, d.clone());
    Ok(d)
}

/// Compute the digests of many files on all cores; errors surface later,
/// from `of`.
pub fn prefetch(paths: &[PathBuf]) {
    use rayon::prelude::*;
    paths.par_iter().for_each(|p| {
        let _ = of(p);
    });
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    path: PathBuf,
    stat: [i64; 7],
    md5: String,
    sha1: String,
    sha256: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
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
        let (Some(md5), Some(sha1), Some(sha256)) =
            (unhex(&s.md5), unhex(&s.sha1), unhex(&s.sha256))
        else {
            continue;
        };
        let [dev, ino, size, mt, mtn, ct, ctn] = s.stat;
        memo.insert(
            (
                s.path,
                dev as u64,
                ino as u64,
                size as u64,
                mt,
                mtn,
                ct,
                ctn,
            ),
            Arc::new(Digests { md5, sha1, sha256 }),
        );
    }
}

/// Save the digests known to this process (at most `max` entries) for the
/// next build, through a temporary file renamed into place.
pub fn save(file: &Path, max: usize) {
    let memo = memo().lock().unwrap_or_else(|e| e.into_inner());
    let mut saved: Vec<Saved> = memo
        .iter()
        .map(|((path, dev, ino, size, mt, mtn, ct, ctn), d)| Saved {
            path: path.clone(),
            stat: [*dev as i64, *ino as i64, *size as i64, *mt, *mtn, *ct, *ctn],
            md5: hex(&d.md5),
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

fn compute(path: &Path) -> Result<Digests> {
    let mut f = File::open(path).with_path("open", path)?;
    let (mut m, mut s1, mut s2) = (Md5::new(), Sha1::new(), Sha256::new());
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf).with_path("read", path)?;
        if n == 0 {
            break;
        }
        m.update(&buf[..n]);
        s1.update(&buf[..n]);
        s2.update(&buf[..n]);
    }
    Ok(Digests {
        md5: m.finalize().into(),
        sha1: s1.finalize().into(),
        sha256: s2.finalize().into(),
    })
}
