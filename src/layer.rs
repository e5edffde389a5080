//! Layer: a [`Plan`] → a deterministic tar stream → gzip, hashed while it is
//! written (sha256 of the tar = diff_id, sha256 of the gzip = digest), in one
//! pass, streaming: no layer is ever held in memory.
//!
//! Every header field is set here by hand: ustar format throughout; a PAX
//! record only where ustar cannot hold a value (long names or link targets,
//! sizes over 8 GiB), its records sorted by key; mode from the plan; uid/gid
//! from the plan with empty user and group names (names would tie the bytes
//! to the build machine's /etc/passwd); mtime = the epoch for every entry; no
//! atime or ctime. Compression is in [`crate::compress`]: the gzip header
//! has mtime 0, no file name and OS byte 255.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::compress::{Compression, Compressor};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::error::{Error, IoResultExt, Result};
use crate::plan::{ItemKind, Plan};
use crate::recipe::ImagePath;

/// Media type of gzip layers.
pub const MEDIA_TYPE_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of zstd layers.
pub const MEDIA_TYPE_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Media type of uncompressed layers.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Largest mtime an ustar header holds (11 octal digits): year 2242.
pub const MAX_EPOCH: u64 = 0o777_7777_7777;

/// What a finished layer blob is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// "sha256:…" of the compressed bytes.
    pub digest: String,
    /// "sha256:…" of the uncompressed tar.
    pub diff_id: String,
    /// Compressed size.
    pub size: u64,
    pub media_type: &'static str,
}

/// A writer that hashes and counts what passes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> HashWriter<W> {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// ("sha256:<hex>", bytes written, inner writer).
    pub fn finish(self) -> (String, u64, W) {
        (
            sha256_name(self.hasher.finalize().as_slice()),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// "sha256:" + lowercase hex.
pub fn sha256_name(hash: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// sha256 digest of bytes in memory.
pub fn digest_of(bytes: &[u8]) -> String {
    sha256_name(Sha256::digest(bytes).as_slice())
}

/// Write the layer for `plan` into `out` (a new temporary file), return its
/// digests. `out_path` only names the file in errors.
pub fn write_layer(
    plan: &Plan,
    epoch: u64,
    compression: Compression,
    jobs: usize,
    progress: &crate::progress::Progress,
    out: File,
    out_path: &Path,
) -> Result<(LayerInfo, File)> {
    // One pass: tar → sha256 (diff_id) → compress → sha256 (digest) → file.
    let out = std::io::BufWriter::with_capacity(1 << 20, out);
    let compressed = HashWriter::new(out);
    let compressor = Compressor::new(compression, jobs, compressed)
        .with_path("start compressing layer", out_path)?;
    let mut tar = HashWriter::new(std::io::BufWriter::with_capacity(256 << 10, compressor));
    write_tar(
        plan,
        epoch,
        crate::progress::Counted {
            inner: &mut tar,
            progress: progress.clone(),
        },
    )?;
    let (diff_id, _, buffered) = tar.finish();
    let compressor = buffered
        .into_inner()
        .map_err(|e| Error::io("compress layer", out_path, e.into_error()))?;
    let compressed = compressor.finish().with_path("compress layer", out_path)?;
    let (digest, size, buffered) = compressed.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| Error::io("write", out_path, e.into_error()))?;
    Ok((
        LayerInfo {
            digest,
            diff_id,
            size,
            media_type: compression.media_type(),
        },
        file,
    ))
}

/// Write the plan as a tar stream (with its two zero end blocks).
pub fn write_tar<W: Write>(plan: &Plan, epoch: u64, out: W) -> Result<()> {
    if epoch > MAX_EPOCH {
        return Err(Error::msg(format!(
            "write layer: epoch {epoch} is past what a tar header holds ({MAX_EPOCH})"
        )));
    }
    let mut b = tar::Builder::new(out);
    for (path, item) in &plan.entries {
        let (kind, size) = match &item.kind {
            ItemKind::Dir => (EntryType::Directory, 0),
            ItemKind::File { size, .. } => (EntryType::Regular, *size),
            ItemKind::Data { bytes } => (EntryType::Regular, bytes.len() as u64),
            ItemKind::Symlink { .. } => (EntryType::Symlink, 0),
            ItemKind::HardLink { .. } => (EntryType::Link, 0),
        };
        let mut name = path.rel().to_string();
        if kind == EntryType::Directory {
            name.push('/');
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(item.mode & 0o7777);
        h.set_uid(item.uid as u64);
        h.set_gid(item.gid as u64);
        h.set_mtime(epoch);
        h.set_size(0);
        h.set_username("").map_err(|e| tar_err(path, e))?;
        h.set_groupname("").map_err(|e| tar_err(path, e))?;
        h.set_device_major(0).map_err(|e| tar_err(path, e))?;
        h.set_device_minor(0).map_err(|e| tar_err(path, e))?;

        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if h.set_path(&name).is_err() {
            pax.push(("path", name.as_bytes().to_vec()));
            h.set_path(truncated(&name, 99))
                .map_err(|e| tar_err(path, e))?;
        }
        let link = match &item.kind {
            ItemKind::Symlink { target } => Some(target.as_str()),
            ItemKind::HardLink { target } => Some(target.rel()),
            _ => None,
        };
        if let Some(target) = link {
            if target.len() > 100 || h.set_link_name(target).is_err() {
                pax.push(("linkpath", target.as_bytes().to_vec()));
                h.set_link_name(truncated(target, 99))
                    .map_err(|e| tar_err(path, e))?;
            }
        }
        if size > MAX_EPOCH {
            pax.push(("size", size.to_string().into_bytes()));
        } else {
            h.set_size(size);
        }
        if !pax.is_empty() {
            write_pax(&mut b, &name, epoch, &mut pax).map_err(|e| tar_err(path, e))?;
        }
        h.set_cksum();
        match &item.kind {
            ItemKind::File { src, size } => {
                let f = File::open(src).with_path("open", src)?;
                let mut r = ExactReader {
                    inner: f.take(*size + 1),
                    left: *size,
                };
                b.append(&h, &mut r).map_err(|e| {
                    if e.kind() == io::ErrorKind::InvalidData {
                        Error::msg(format!("read {}: {e}", src.display()))
                    } else {
                        Error::io("read", src, e)
                    }
                })?;
                if r.inner.read(&mut [0u8; 1]).with_path("read", src)? != 0 {
                    return Err(Error::msg(format!(
                        "read {}: file grew while it was being copied",
                        src.display()
                    )));
                }
            }
            ItemKind::Data { bytes } => b.append(&h, &bytes[..]).map_err(|e| tar_err(path, e))?,
            _ => b.append(&h, io::empty()).map_err(|e| tar_err(path, e))?,
        }
    }
    b.into_inner()
        .map_err(|e| Error::msg(format!("write layer: {e}")))?;
    Ok(())
}

/// Reads exactly `left` bytes or fails: a file that shrinks while it is
/// copied must not produce a short, silently padded entry.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "file shrank while it was being copied",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn tar_err(path: &ImagePath, e: io::Error) -> Error {
    Error::msg(format!("write layer entry {path}: {e}"))
}

fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A PAX extended header ("x") for the entry that follows, records sorted.
fn write_pax<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    epoch: u64,
    records: &mut [(&str, Vec<u8>)],
) -> io::Result<()> {
    records.sort_by(|a, b| a.0.cmp(b.0));
    let mut data = Vec::new();
    for (k, v) in records.iter() {
        // "LEN KEY=VALUE\n" where LEN counts itself.
        let body = k.len() + v.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let base = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_path(format!("PaxHeaders/{}", truncated(base, 80)))?;
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_username("")?;
    h.set_groupname("")?;
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data.as_slice())
}
