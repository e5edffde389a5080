//! Content digests of input files, computed once per file and process: one
//! read feeds MD5 (dpkg md5sums), SHA-1 and SHA-256 (SPDX, the layer cache
//! key), and `prefetch` computes them for many files in parallel.

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

/// A file's identity for the memo: path, inode, size and change time, so
/// a file rewritten in place is hashed again.
type Key = (PathBuf, u64, u64, i64, i64);

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
        m.ino(),
        m.size(),
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
