//! The layer cache: a layer whose inputs, settings and bareroot version are
//! unchanged is not tarred or compressed again.
//!
//! The key is a SHA-256 over everything that decides the layer's bytes:
//! the cache format, bareroot's version, the compression setting, the
//! epoch and, for every entry of the plan in order, its path, kind, mode,
//! owner, link target and — for files — the SHA-256 of the content. That
//! digest comes from the stat cache of [`crate::digest`] only when the
//! file's device, inode, size, mtime and ctime are all unchanged, and is
//! computed from the bytes otherwise: a change of content is missed only if
//! it keeps the size and lands within one tick of the file system's
//! timestamps (ctime cannot be set back). On a miss the key is made from
//! the digests of the bytes the layer pass actually read. An entry is a directory `layers/<key>/` holding the
//! compressed blob and `meta.json`; it is written to a temporary directory
//! and renamed into place, and on use the blob's size and CRC-32 are
//! checked against `meta.json` (the SHA-256 was computed as the blob was
//! written; a CRC-32 catches damage at a tenth of the cost), so a partial
//! or corrupt entry is never used (it is removed and the layer rebuilt). The cache lives in
//! `$XDG_CACHE_HOME/bareroot` (else `~/.cache/bareroot`) and is trimmed to
//! a size bound, least recently used first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::layer::compress::Compression;
use crate::layer::LayerInfo;
use crate::plan::{ItemKind, Plan};

/// Bump when the key's recipe or the entry layout changes.
const FORMAT: &str = "bareroot-layer-cache-1";

/// The name of the CRC-32 stored beside an extra file is the file's with
/// this appended.
const CRC_SUFFIX: &str = ".crc32";

/// Where unpacked bases live (`base::unpacked`): `trees/<key>/` holds
/// `rootfs/` and [`TREE_FILE`], whose first line is
/// `bareroot-tree-1 crc32=<8 hex> bytes=<n>` (the CRC-32 of the rest, the
/// bytes of the files under `rootfs/`), its mtime when a build last used it.
pub const TREES: &str = "trees";
pub const TREE_FILE: &str = "tree.json";
pub const TREE_FORMAT: &str = "bareroot-tree-1";

/// The first line of a [`TREE_FILE`], without its newline.
pub fn tree_header(crc: u32, bytes: u64) -> String {
    format!("{TREE_FORMAT} crc32={crc:08x} bytes={bytes}")
}

/// The CRC-32 and size a [`TREE_FILE`]'s first line states.
pub fn parse_tree_header(line: &str) -> Option<(u32, u64)> {
    let mut words = line.split(' ');
    (words.next()? == TREE_FORMAT).then_some(())?;
    let crc = u32::from_str_radix(words.next()?.strip_prefix("crc32=")?, 16).ok()?;
    let bytes = words.next()?.strip_prefix("bytes=")?.parse().ok()?;
    words.next().is_none().then_some((crc, bytes))
}

/// Default bound on the cache's size.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

#[derive(Serialize, Deserialize)]
struct Meta {
    digest: Digest,
    diff_id: Digest,
    size: u64,
    media_type: String,
    /// CRC-32 of the blob as stored, checked on each use. (Its SHA-256 is
    /// `digest`, computed as it was written; entries without a CRC are
    /// checked against that instead.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32: Option<u32>,
}

/// A layer cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    max_bytes: u64,
}

impl Cache {
    /// The user's cache (`$XDG_CACHE_HOME/bareroot` or `~/.cache/bareroot`);
    /// `BAREROOT_CACHE_DIR` overrides, `BAREROOT_CACHE_MAX_BYTES` bounds it.
    pub fn from_env() -> Option<Cache> {
        let root = match std::env::var_os("BAREROOT_CACHE_DIR") {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("XDG_CACHE_HOME") {
                Some(d) if !d.is_empty() => PathBuf::from(d).join("bareroot"),
                _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/bareroot"),
            },
        };
        let max_bytes = std::env::var("BAREROOT_CACHE_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        process_start();
        Some(Cache { root, max_bytes })
    }

    pub fn new(root: PathBuf, max_bytes: u64) -> Cache {
        process_start();
        Cache { root, max_bytes }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The key of the layer `plan` makes with these settings, its inputs'
    /// digests taken from `digests`.
    pub fn key(
        plan: &Plan,
        epoch: u64,
        compression: Compression,
        digests: crate::digest::Source,
    ) -> Result<String> {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(FORMAT.as_bytes());
        field(env!("CARGO_PKG_VERSION").as_bytes());
        field(compression.describe().as_bytes());
        field(&epoch.to_le_bytes());
        for (path, item) in &plan.entries {
            field(path.as_str().as_bytes());
            field(
                &[
                    item.mode.to_le_bytes(),
                    item.uid.to_le_bytes(),
                    item.gid.to_le_bytes(),
                ]
                .concat(),
            );
            match &item.kind {
                ItemKind::Dir => field(b"d"),
                ItemKind::Symlink { target } => {
                    field(b"l");
                    field(target.as_bytes());
                }
                ItemKind::HardLink { target } => {
                    field(b"h");
                    field(target.as_str().as_bytes());
                }
                ItemKind::Special { kind, major, minor } => {
                    field(b"s");
                    field(kind.name().as_bytes());
                    field(&major.to_le_bytes());
                    field(&minor.to_le_bytes());
                }
                ItemKind::Data { bytes } => {
                    field(b"f");
                    field(&Sha256::digest(bytes));
                }
                ItemKind::File { src, size } => {
                    field(b"f");
                    field(&size.to_le_bytes());
                    field(&digests.get(src)?.sha256);
                }
            }
            for (name, value) in plan.xattrs.get(path).into_iter().flatten() {
                field(b"x");
                field(name.as_bytes());
                field(value);
            }
        }
        Ok(Digest::from_sha256(h.finalize().as_slice())
            .hex()
            .to_string())
    }

    /// A verified cached layer for `key`: its info and blob path. A
    /// damaged entry is removed and reported as a miss.
    pub fn get(&self, key: &str) -> Option<(LayerInfo, PathBuf)> {
        let dir = self.root.join("layers").join(key);
        let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
        let blob = dir.join("blob");
        let ok = fs::metadata(&blob)
            .map(|m| m.len() == meta.size)
            .unwrap_or(false)
            && match meta.crc32 {
                Some(crc) => crc_file(&blob).ok() == Some(crc),
                None => {
                    hash_file(&blob).ok().map(|h| Digest::from_sha256(&h))
                        == Some(meta.digest.clone())
                }
            };
        let media_type = [
            crate::layer::MEDIA_TYPE_GZIP,
            crate::layer::MEDIA_TYPE_ZSTD,
            crate::layer::MEDIA_TYPE_TAR,
        ]
        .into_iter()
        .find(|m| *m == meta.media_type);
        match media_type {
            Some(media_type) if ok => {
                // Mark as recently used for trimming.
                let _ = touch(&dir.join("meta.json"));
                Some((
                    LayerInfo {
                        digest: meta.digest,
                        diff_id: meta.diff_id,
                        size: meta.size,
                        media_type,
                    },
                    blob,
                ))
            }
            _ => {
                let _ = fs::remove_dir_all(&dir);
                None
            }
        }
    }

    /// Store a built layer (the blob at `blob`) under `key`, then trim.
    /// Failures only cost the next build time, so they are returned for a
    /// warning, never fatal to the build.
    pub fn put(&self, key: &str, info: &LayerInfo, blob: &Path) -> Result<()> {
        let layers = self.root.join("layers");
        fs::create_dir_all(&layers).with_path("create cache directory", &layers)?;
        let dest = layers.join(key);
        if dest.exists() {
            return Ok(());
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&layers)
            .map_err(|e| Error::io("create cache entry in", &layers, e))?;
        let b = tmp.path().join("blob");
        if fs::hard_link(blob, &b).is_err() {
            // A copy (another file system) is checked against the digest
            // before its CRC vouches for it.
            fs::copy(blob, &b).with_path("copy into the cache", &b)?;
            if Digest::from_sha256(&hash_file(&b)?) != info.digest {
                return Err(Error::msg(format!(
                    "copy {} into the cache: the copy does not hash to {}",
                    blob.display(),
                    info.digest
                )));
            }
        }
        let meta = Meta {
            digest: info.digest.clone(),
            diff_id: info.diff_id.clone(),
            size: info.size,
            media_type: info.media_type.to_string(),
            crc32: Some(crc_file(&b)?),
        };
        fs::write(
            tmp.path().join("meta.json"),
            serde_json::to_vec(&meta).expect("serializes"),
        )
        .with_path("write cache entry", tmp.path())?;
        let staged = tmp.keep();
        if let Err(e) = fs::rename(&staged, &dest) {
            let _ = fs::remove_dir_all(&staged);
            if !dest.exists() {
                return Err(Error::io("store cache entry", &dest, e));
            }
        }
        self.trim()
    }

    /// A file stored beside the layer of `key` by [`Cache::put_extra`],
    /// when it is whole (its CRC-32 matches the one stored beside it in
    /// `<name>.crc32`): its path, for linking or copying. A damaged copy is
    /// a miss (and is written over by the next `put_extra`).
    pub fn get_extra(&self, key: &str, name: &str) -> Option<PathBuf> {
        let dir = self.root.join("layers").join(key);
        let path = dir.join(name);
        let want = fs::read(dir.join(format!("{name}{CRC_SUFFIX}"))).ok()?;
        let want = u32::from_le_bytes(want.as_slice().try_into().ok()?);
        (crc_file(&path).ok()? == want).then_some(path)
    }

    /// Keep the file at `src` (derived from the layer, e.g. its SBOM) beside
    /// the layer of `key`, which must be stored: hard-linked when it can be
    /// (the same bytes, not copied), else copied, through a temporary name
    /// renamed into place; then its CRC-32 beside it.
    pub fn put_extra(&self, key: &str, name: &str, src: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if name.contains('/')
            || name.starts_with('.')
            || name.ends_with(CRC_SUFFIX)
            || name == "blob"
            || name == "meta.json"
        {
            return Err(Error::msg(format!(
                "store {name:?} in the cache: not a plain file name"
            )));
        }
        let dir = self.root.join("layers").join(key);
        if !dir.join("meta.json").is_file() {
            return Err(Error::msg(format!(
                "store {name} in the cache: no entry {key}"
            )));
        }
        let crc = crc_file(src)?;
        let dest = dir.join(name);
        let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(src, &tmp).is_err() {
            fs::copy(src, &tmp).map_err(|e| Error::io("copy into", &tmp, e))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io("set the mode of", &tmp, e))?;
        }
        // The old CRC goes first: a reader between the renames sees a miss.
        let sidecar = dir.join(format!("{name}{CRC_SUFFIX}"));
        let _ = fs::remove_file(&sidecar);
        fs::rename(&tmp, &dest).map_err(|e| Error::io("store", &dest, e))?;
        let mut staged = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| Error::io("create a file in", &dir, e))?;
        io::Write::write_all(&mut staged, &crc.to_le_bytes())
            .map_err(|e| Error::io("write", staged.path(), e))?;
        staged
            .persist(&sidecar)
            .map_err(|e| Error::io("store", &sidecar, e.error))?;
        Ok(())
    }

    /// Remove least recently used entries until the cache fits its bound.
    pub fn trim(&self) -> Result<()> {
        let layers = self.root.join("layers");
        let mut entries = Vec::new();
        let mut total = 0u64;
        for e in fs::read_dir(&layers).with_path("read cache", &layers)? {
            let Ok(e) = e else { continue };
            let dir = e.path();
            let size = fs::metadata(dir.join("blob")).map(|m| m.len()).unwrap_or(0);
            let used = fs::metadata(dir.join("meta.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            total += size;
            entries.push((used, size, dir));
        }
        // Pulled base blobs and rootfs layers (`base::fetch`), by when a
        // build last used them.
        let blobs = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() {
                continue;
            }
            let used = m.modified().unwrap_or(std::time::UNIX_EPOCH);
            total += m.len();
            entries.push((used, m.len(), e.path()));
        }
        // Unpacked bases, by when a build last used them; one a build left
        // half made (`.tmp-*`) is the oldest of all once an hour old.
        let trees = self.root.join(TREES);
        for e in fs::read_dir(&trees).into_iter().flatten().flatten() {
            let dir = e.path();
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 3600);
                if old {
                    entries.push((std::time::UNIX_EPOCH, 0, dir));
                }
                continue;
            }
            let file = dir.join(TREE_FILE);
            let used = fs::metadata(&file)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            // A tree this process opened may still be read (by the SBOM, by
            // another platform's build): never removed under it.
            if used >= *process_start() {
                continue;
            }
            let size = first_line(&file)
                .and_then(|l| parse_tree_header(&l))
                .map_or(0, |(_, bytes)| bytes);
            total += size;
            entries.push((used, size, dir));
        }
        entries.sort();
        for (_, size, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            total = total.saturating_sub(size);
        }
        Ok(())
    }
}

/// When this process first asked (a build opens its cache before a base).
pub fn process_start() -> &'static std::time::SystemTime {
    static START: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();
    START.get_or_init(|| {
        // mtimes may be coarser than the clock: a second of slack.
        std::time::SystemTime::now() - std::time::Duration::from_secs(1)
    })
}

/// The first line of a file (at most 256 bytes of it), without its newline.
fn first_line(p: &Path) -> Option<String> {
    let mut buf = [0u8; 256];
    let f = fs::File::open(p).ok()?;
    let n = io::Read::read(&mut io::Read::take(f, 256), &mut buf).ok()?;
    let line = buf[..n].split(|&b| b == b'\n').next()?;
    String::from_utf8(line.to_vec()).ok()
}

fn hash_file(p: &Path) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    crate::digest::read_through(p, |b| h.update(b))?;
    Ok(h.finalize().into())
}

/// The CRC-32 of a file, its two halves read on two threads.
fn crc_file(p: &Path) -> Result<u32> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(p).with_path("open", p)?;
    let len = f.metadata().with_path("stat", p)?.len();
    let crc = |from: u64, to: u64| -> io::Result<crc32fast::Hasher> {
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut at = from;
        while at < to {
            let want = buf.len().min((to - at) as usize);
            match f.read_at(&mut buf[..want], at)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    h.update(&buf[..n]);
                    at += n as u64;
                }
            }
        }
        Ok(h)
    };
    let half = len / 2;
    let (first, second) = std::thread::scope(|s| {
        // No second thread to be had (a tight pids limit): one after the other.
        let second = std::thread::Builder::new().spawn_scoped(s, || crc(half, len));
        let first = crc(0, half);
        let second = match second {
            Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(_) => crc(half, len),
        };
        (first, second)
    });
    let mut h = first.with_path("read", p)?;
    h.combine(&second.with_path("read", p)?);
    Ok(h.finalize())
}

/// Mark a cache file used (its mtime now), for [`Cache::trim`]'s order.
pub fn touch(p: &Path) -> io::Result<()> {
    let f = fs::OpenOptions::new().append(true).open(p)?;
    f.set_modified(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Item;
    use crate::recipe::ImagePath;

    #[test]
    fn a_key_made_after_the_layer_pass_describes_the_bytes_read() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("input");
        fs::write(&src, b"first content").unwrap();
        // An old mtime, so the rewrite below surely changes the stamp.
        filetime::set_file_mtime(&src, filetime::FileTime::from_unix_time(946_684_800, 0)).unwrap();
        let mut plan = Plan::default();
        let item = Item::file(src.clone(), 13, "test").explicit();
        plan.insert(&ImagePath::new("/f").unwrap(), item).unwrap();
        let gz = Compression::Gzip { level: 3 };
        let now = crate::digest::Source::default();
        let before = Cache::key(&plan, 0, gz, now).unwrap();
        let read = crate::layer::write_tar(&plan, 0, std::io::sink()).unwrap();
        // The file changes (same size) after it was read into the layer.
        fs::write(&src, b"other content").unwrap();
        let described = Cache::key(&plan, 0, gz, crate::digest::Source { read: Some(&read) });
        assert_eq!(
            described.unwrap(),
            before,
            "the key of the bytes in the layer"
        );
        assert_ne!(
            Cache::key(&plan, 0, gz, now).unwrap(),
            before,
            "the file now"
        );
    }

    #[test]
    fn an_extra_file_is_linked_in_and_a_damaged_one_is_a_miss() {
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::new(t.path().join("cache"), DEFAULT_MAX_BYTES);
        let blob = t.path().join("blob");
        fs::write(&blob, b"layer bytes").unwrap();
        let info = LayerInfo {
            digest: Digest::of(b"layer bytes"),
            diff_id: Digest::of(b"tar"),
            size: 11,
            media_type: crate::layer::MEDIA_TYPE_GZIP,
        };
        let key = "k".repeat(64);
        let sbom = t.path().join("sbom.json");
        fs::write(&sbom, b"{\"spdxVersion\": \"SPDX-2.3\"}").unwrap();
        assert!(
            cache.put_extra(&key, "sbom.json", &sbom).is_err(),
            "no layer entry yet"
        );
        cache.put(&key, &info, &blob).unwrap();
        for bad in ["../x", ".hidden", "blob", "meta.json", "a.crc32"] {
            assert!(cache.put_extra(&key, bad, &sbom).is_err(), "{bad}");
        }
        assert_eq!(cache.get_extra(&key, "sbom.json"), None, "not stored yet");
        cache.put_extra(&key, "sbom.json", &sbom).unwrap();
        let kept = cache.get_extra(&key, "sbom.json").expect("stored");
        assert_eq!(fs::read(&kept).unwrap(), fs::read(&sbom).unwrap());
        // Damaged in place, same size: the CRC-32 catches it.
        fs::write(&kept, b"{\"spdxVersion\": \"SPDX-2.4\"}").unwrap();
        assert_eq!(cache.get_extra(&key, "sbom.json"), None, "damaged");
        // Stored again (from a new file): whole again.
        let fresh = t.path().join("fresh.json");
        fs::write(&fresh, b"{}").unwrap();
        cache.put_extra(&key, "sbom.json", &fresh).unwrap();
        let kept = cache.get_extra(&key, "sbom.json").expect("stored again");
        assert_eq!(fs::read(kept).unwrap(), b"{}");
    }
}
