//! Layer: a [`Plan`] → a deterministic tar stream → gzip, hashed while it is
//! written (sha256 of the tar = diff_id, sha256 of the gzip = digest), in one
//! pass, streaming: no layer is ever held in memory.
//!
//! Every header field is set here by hand: ustar format throughout; a PAX
//! record only where ustar cannot hold a value (long names or link targets,
//! sizes over 8 GiB), its records sorted by key; mode from the plan; uid/gid
//! from the plan with empty user and group names (names would tie the bytes
//! to the build machine's /etc/passwd); mtime = the epoch for every entry; no
//! atime or ctime. Compression is in [`crate::layer::compress`]: the gzip header
//! has mtime 0, no file name and OS byte 255.

pub mod compress;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use crate::layer::compress::{Compression, Compressor};
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use crate::digest::{Digest, Inputs};
use crate::error::{Error, IoResultExt, Result};
use crate::plan::{ItemKind, Plan};
use crate::recipe::ImagePath;
use crate::recipe::SpecialKind;

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
    /// Of the compressed bytes.
    pub digest: Digest,
    /// Of the uncompressed tar.
    pub diff_id: Digest,
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

    /// (the digest, bytes written, inner writer).
    pub fn finish(self) -> (Digest, u64, W) {
        (
            Digest::from_sha256(self.hasher.finalize().as_slice()),
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
) -> Result<(LayerInfo, File, Inputs)> {
    let out = std::io::BufWriter::with_capacity(1 << 20, Writeback::new(out));
    let done = |w: std::io::BufWriter<Writeback>| {
        w.into_inner()
            .map(|w| w.file)
            .map_err(|e| Error::io("write", out_path, e.into_error()))
    };
    if compression == Compression::None {
        // tar → sha256 (diff_id, which is also the digest) → file.
        let (diff_id, size, buffered, inputs) = hashed_tar(plan, epoch, progress, out)?;
        let info = LayerInfo {
            digest: diff_id.clone(),
            diff_id,
            size,
            media_type: compression.media_type(),
        };
        return Ok((info, done(buffered)?, inputs));
    }
    // tar → sha256 (diff_id) → compress → sha256 (digest) → file.
    let compressed = HashWriter::new(out);
    let compressor = Compressor::new(compression, jobs, compressed)
        .with_path("start compressing layer", out_path)?;
    let buffered = std::io::BufWriter::with_capacity(256 << 10, compressor);
    let (diff_id, _, buffered, inputs) = hashed_tar(plan, epoch, progress, buffered)?;
    let compressor = buffered
        .into_inner()
        .map_err(|e| Error::io("compress layer", out_path, e.into_error()))?;
    let compressed = compressor.finish().with_path("compress layer", out_path)?;
    let (digest, size, buffered) = compressed.finish();
    let info = LayerInfo {
        digest,
        diff_id,
        size,
        media_type: compression.media_type(),
    };
    Ok((info, done(buffered)?, inputs))
}

/// A file being written that asks the kernel to start writing each few
/// MiB to the disk as soon as they are written (`sync_file_range`), so the
/// fsync that makes the layer durable has little left to wait for.
struct Writeback {
    file: File,
    written: u64,
    started: u64,
}

impl Writeback {
    /// How much is written before its writeback is started.
    const STEP: u64 = 8 << 20;

    fn new(file: File) -> Writeback {
        Writeback {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= Self::STEP {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                // SAFETY: a plain syscall on a descriptor this value owns.
                // Only a hint: a failure shows in the fsync that follows.
                unsafe {
                    libc::sync_file_range(
                        self.file.as_raw_fd(),
                        self.started as libc::off64_t,
                        (self.written - self.started) as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The tar stream of `plan` into `out`: ("sha256:…" of it, its size,
/// `out`, the inputs as read).
fn hashed_tar<W: Write>(
    plan: &Plan,
    epoch: u64,
    progress: &crate::progress::Progress,
    out: W,
) -> Result<(Digest, u64, W, Inputs)> {
    let mut tar = HashWriter::new(out);
    let inputs = write_tar(
        plan,
        epoch,
        crate::progress::Counted {
            inner: &mut tar,
            progress: progress.clone(),
        },
    )?;
    let (digest, size, out) = tar.finish();
    Ok((digest, size, out, inputs))
}

/// How much of a file is read at once, and the size of a hashers' batch.
const CHUNK: usize = 1 << 20;

/// What the layer pass hands the per-file hashers: a buffer of input
/// bytes and where files end in it. Many small files share one buffer, so
/// the hashers wake once a buffer, not once a file.
struct Batch {
    buf: Arc<Vec<u8>>,
    /// Offsets in `buf` where a run of one file's bytes ends, and whether
    /// the file ends there (else it goes on in the next batch).
    cuts: Vec<(usize, bool)>,
}

/// A hasher thread's work: one digest per file, in the order of the files.
fn hash_files<D: sha2::Digest>(rx: Receiver<Batch>) -> Vec<sha2::digest::Output<D>> {
    let mut out = Vec::new();
    let mut h = D::new();
    for batch in rx {
        let mut start = 0;
        for (end, ends_file) in batch.cuts {
            h.update(&batch.buf[start..end]);
            if ends_file {
                out.push(std::mem::replace(&mut h, D::new()).finalize());
            }
            start = end;
        }
    }
    out
}

/// The batch being filled for the hashers, and the buffers they are done
/// with.
struct Batcher<'h> {
    hashers: &'h [SyncSender<Batch>],
    buf: Arc<Vec<u8>>,
    filled: usize,
    cuts: Vec<(usize, bool)>,
    /// Buffers sent; reused once the hashers have dropped them (the
    /// channels' bounds keep this short).
    sent: VecDeque<Arc<Vec<u8>>>,
}

impl<'h> Batcher<'h> {
    fn new(hashers: &'h [SyncSender<Batch>]) -> Batcher<'h> {
        Batcher {
            hashers,
            buf: Arc::new(vec![0u8; CHUNK]),
            filled: 0,
            cuts: Vec::new(),
            sent: VecDeque::new(),
        }
    }

    /// Room left in the current buffer (a full one is sent first).
    fn room(&mut self) -> &mut [u8] {
        if self.filled == CHUNK {
            self.send();
        }
        let filled = self.filled;
        &mut Arc::get_mut(&mut self.buf).expect("an unshared buffer")[filled..]
    }

    /// `n` bytes were put at the start of [`Batcher::room`]; `ends_file`
    /// when they end the file.
    fn filled(&mut self, n: usize, ends_file: bool) {
        self.filled += n;
        match self.cuts.last_mut() {
            // More of the file whose run ended the buffer so far.
            Some(last) if !last.1 && n > 0 => *last = (self.filled, ends_file),
            _ => self.cuts.push((self.filled, ends_file)),
        }
    }

    /// The bytes last put in.
    fn last(&self, n: usize) -> &[u8] {
        &self.buf[self.filled - n..self.filled]
    }

    /// Hand the current batch to the hashers and take an unused buffer.
    fn send(&mut self) {
        if self.cuts.is_empty() {
            return;
        }
        let next = match self.sent.front().map(Arc::strong_count) {
            Some(1) => self.sent.pop_front().expect("front exists"),
            _ => Arc::new(vec![0u8; CHUNK]),
        };
        let buf = std::mem::replace(&mut self.buf, next);
        let cuts = std::mem::take(&mut self.cuts);
        for tx in self.hashers {
            // A hasher gone (it cannot fail) only loses digests.
            let _ = tx.send(Batch {
                buf: buf.clone(),
                cuts: cuts.clone(),
            });
        }
        self.sent.push_back(buf);
        self.filled = 0;
    }
}

/// How the layer pass met one input file.
enum ReadAs {
    /// Its digests were known for the stamp it had.
    Known(Arc<crate::digest::Digests>),
    /// It went to the hashers; the stamp it had while read.
    Hashed(crate::digest::Stamp),
}

/// Write the plan as a tar stream (with its two zero end blocks), and
/// return the digests of every input file as read.
///
/// Each input file is read once: the same chunks go into the stream and,
/// on two helper threads, into the file's SHA-1 and SHA-256, which are
/// also remembered ([`crate::digest::remember`]) for later builds. A file
/// whose size, mtime or ctime changes while it is read (or that shrinks or
/// grows) fails the build.
pub fn write_tar<W: Write>(plan: &Plan, epoch: u64, mut out: W) -> Result<Inputs> {
    if epoch > MAX_EPOCH {
        return Err(Error::msg(format!(
            "write layer: epoch {epoch} is past what a tar header holds ({MAX_EPOCH})"
        )));
    }
    std::thread::scope(|scope| {
        let (tx1, rx1) = sync_channel::<Batch>(4);
        let (tx256, rx256) = sync_channel::<Batch>(4);
        let sha1 = scope.spawn(move || hash_files::<sha1::Sha1>(rx1));
        let sha256 = scope.spawn(move || hash_files::<Sha256>(rx256));
        let mut read = Vec::new();
        let written = write_entries(plan, epoch, &mut out, &[tx1, tx256], &mut read);
        let sha1 = sha1.join().unwrap_or_default();
        let sha256 = sha256.join().unwrap_or_default();
        written?;
        let mut hashed = sha1.iter().zip(&sha256);
        let mut inputs = Inputs::default();
        for (src, how) in read {
            let digests = match how {
                ReadAs::Known(d) => d,
                ReadAs::Hashed(stamp) => {
                    let (s1, s256) = hashed.next().ok_or_else(|| {
                        Error::msg(format!("hash {}: a hasher stopped early", src.display()))
                    })?;
                    let (Ok(sha1), Ok(sha256)) = (s1[..].try_into(), s256[..].try_into()) else {
                        return Err(Error::msg(format!(
                            "hash {}: bad digest length",
                            src.display()
                        )));
                    };
                    let d = crate::digest::Digests { sha1, sha256 };
                    crate::digest::remember(src, stamp, d.clone());
                    Arc::new(d)
                }
            };
            inputs.insert(src.as_os_str().to_owned(), digests);
        }
        Ok(inputs)
    })
}

/// The tar entries of `plan` (see [`write_tar`]); `read` gets each input
/// file in order, with how it was read. Dropping `hashers` ends their
/// threads.
fn write_entries<'p, W: Write>(
    plan: &'p Plan,
    epoch: u64,
    out: &mut W,
    hashers: &[SyncSender<Batch>],
    read: &mut Vec<(&'p Path, ReadAs)>,
) -> Result<()> {
    let mut batch = Batcher::new(hashers);
    let mut scratch = Vec::new();
    for (path, item) in &plan.entries {
        let (kind, size) = match &item.kind {
            ItemKind::Dir => (EntryType::Directory, 0),
            ItemKind::File { size, .. } => (EntryType::Regular, *size),
            ItemKind::Data { bytes } => (EntryType::Regular, bytes.len() as u64),
            ItemKind::Symlink { .. } => (EntryType::Symlink, 0),
            ItemKind::HardLink { .. } => (EntryType::Link, 0),
            ItemKind::Special { kind, .. } => (
                match kind {
                    SpecialKind::Fifo => EntryType::Fifo,
                    SpecialKind::CharDevice => EntryType::Char,
                    SpecialKind::BlockDevice => EntryType::Block,
                },
                0,
            ),
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
        let (major, minor) = match &item.kind {
            ItemKind::Special { major, minor, .. } => (*major, *minor),
            _ => (0, 0),
        };
        h.set_device_major(major).map_err(|e| tar_err(path, e))?;
        h.set_device_minor(minor).map_err(|e| tar_err(path, e))?;

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
        let xattr_keys: Vec<(String, &[u8])> = plan
            .xattrs
            .get(path)
            .into_iter()
            .flatten()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        for (k, v) in &xattr_keys {
            pax.push((k.as_str(), v.to_vec()));
        }
        if !pax.is_empty() {
            write_pax(out, &name, epoch, &mut pax).map_err(|e| tar_err(path, e))?;
        }
        h.set_cksum();
        out.write_all(h.as_bytes()).map_err(|e| tar_err(path, e))?;
        match &item.kind {
            ItemKind::File { src, size } => {
                let how = copy_file(src, *size, out, &mut batch, &mut scratch)?;
                read.push((src.as_path(), how));
            }
            ItemKind::Data { bytes } => out.write_all(bytes).map_err(|e| tar_err(path, e))?,
            _ => {}
        }
        pad(out, size).map_err(|e| tar_err(path, e))?;
    }
    batch.send();
    out.write_all(&[0u8; 1024])
        .map_err(|e| Error::msg(format!("write layer: {e}")))?;
    Ok(())
}

/// Copy exactly `size` bytes of `src` into `out`, and into the hashers'
/// batch when its digests are not known yet.
fn copy_file<W: Write>(
    src: &Path,
    size: u64,
    out: &mut W,
    batch: &mut Batcher,
    scratch: &mut Vec<u8>,
) -> Result<ReadAs> {
    use crate::digest::Stamp;
    let changed = |what: &str| {
        Error::msg(format!(
            "read {}: file {what} while it was being copied into the layer",
            src.display()
        ))
    };
    let mut f = File::open(src).with_path("open", src)?;
    let before = f.metadata().with_path("stat", src)?;
    if before.len() != size {
        return Err(changed(&format!(
            "changed size ({size} bytes when planned, now {})",
            before.len()
        )));
    }
    let known = crate::digest::known(src, &before);
    let hash = known.is_none();
    if !hash && scratch.is_empty() {
        scratch.resize(CHUNK, 0);
    }
    let mut left = size;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        // Read straight into the hashers' batch (or, for a file whose
        // digests are known, a scratch buffer).
        let into = if hash { batch.room() } else { &mut scratch[..] };
        let want = want.min(into.len());
        let n = match f.read(&mut into[..want]) {
            Ok(0) => return Err(changed("shrank")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", src, e)),
        };
        left -= n as u64;
        let bytes = if hash {
            batch.filled(n, left == 0);
            batch.last(n)
        } else {
            &scratch[..n]
        };
        out.write_all(bytes)
            .with_path("write layer entry for", src)?;
    }
    if hash && size == 0 {
        batch.filled(0, true);
    }
    if f.read(&mut [0u8; 1]).with_path("read", src)? != 0 {
        return Err(changed("grew"));
    }
    let after = f.metadata().with_path("stat", src)?;
    if Stamp::of(&before) != Stamp::of(&after) {
        return Err(changed("changed"));
    }
    Ok(match known {
        Some(d) => ReadAs::Known(d),
        None => ReadAs::Hashed(Stamp::of(&before)),
    })
}

/// Zeros up to the next 512-byte block after `size` bytes of data.
fn pad<W: Write>(out: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % 512) as usize;
    if rem == 0 {
        return Ok(());
    }
    out.write_all(&[0u8; 512][..512 - rem])
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
    out: &mut W,
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
    out.write_all(h.as_bytes())?;
    out.write_all(&data)?;
    pad(out, data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Item;

    /// A plan of one input file.
    fn plan_of(src: &Path) -> Plan {
        let mut plan = Plan::default();
        let size = std::fs::metadata(src).unwrap().len();
        let item = Item::file(src.to_path_buf(), size, "test").explicit();
        plan.insert(&ImagePath::new("/data").unwrap(), item)
            .unwrap();
        plan
    }

    /// A sink that rewrites `victim` in place (same size, new bytes) the
    /// first time it sees the victim's content go by.
    struct Meddler<'a> {
        victim: &'a Path,
        done: bool,
    }

    impl Write for Meddler<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.done && buf.windows(8).any(|w| w == b"original") {
                let mut f = std::fs::OpenOptions::new().write(true).open(self.victim)?;
                f.write_all(b"modified")?;
                self.done = true;
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn same_size_rewrite_during_read_fails() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("input");
        std::fs::write(&src, b"original content").unwrap();
        // An old mtime, so the rewrite surely moves it.
        filetime::set_file_mtime(&src, filetime::FileTime::from_unix_time(946_684_800, 0)).unwrap();
        let plan = plan_of(&src);
        let mut sink = Meddler {
            victim: &src,
            done: false,
        };
        let err = write_tar(&plan, 0, &mut sink).unwrap_err().to_string();
        assert!(sink.done, "the input was not rewritten");
        assert!(
            err.contains("input") && err.contains("changed while it was being copied"),
            "{err}"
        );
        assert_eq!(std::fs::read(&src).unwrap(), b"modified content");
    }

    #[test]
    fn digests_of_inputs_are_remembered_from_the_one_read() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("input");
        let bytes = vec![7u8; 3 * CHUNK + 5];
        std::fs::write(&src, &bytes).unwrap();
        let meta = std::fs::metadata(&src).unwrap();
        assert!(crate::digest::known(&src, &meta).is_none());
        let mut tar = Vec::new();
        write_tar(&plan_of(&src), 0, &mut tar).unwrap();
        let d = crate::digest::known(&src, &meta).expect("remembered by the layer pass");
        assert_eq!(d.sha256[..], Sha256::digest(&bytes)[..]);
        assert_eq!(d.sha1[..], sha1::Sha1::digest(&bytes)[..]);
        // The stream holds the file whole after its header, padded.
        assert_eq!(&tar[512..512 + bytes.len()], &bytes[..]);
        assert_eq!(tar.len(), 512 + bytes.len().div_ceil(512) * 512 + 1024);
    }

    /// Files of every size around the hashers' batch buffer, many small
    /// ones sharing a buffer and large ones spanning several: each gets
    /// its own digests, and the stream holds each whole.
    #[test]
    fn batched_hashing_cuts_files_where_they_end() {
        let t = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            511,
            CHUNK - 1,
            CHUNK,
            0,
            CHUNK + 1,
            2 * CHUNK,
            3,
            2 * CHUNK - 7,
            0,
        ];
        let mut plan = Plan::default();
        let mut files = Vec::new();
        for (i, &size) in sizes.iter().chain(&[100; 40]).enumerate() {
            let src = t.path().join(format!("f{i:03}"));
            let bytes: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8).collect();
            std::fs::write(&src, &bytes).unwrap();
            let item = crate::plan::Item::file(src.clone(), size as u64, "test").explicit();
            plan.insert(&ImagePath::new(&format!("/f{i:03}")).unwrap(), item)
                .unwrap();
            files.push((src, bytes));
        }
        let mut tar = Vec::new();
        let inputs = write_tar(&plan, 0, &mut tar).unwrap();
        let mut at = 0;
        for (src, bytes) in &files {
            let d = &inputs[src.as_os_str()];
            assert_eq!(d.sha256[..], Sha256::digest(bytes)[..], "{}", src.display());
            assert_eq!(
                d.sha1[..],
                sha1::Sha1::digest(bytes)[..],
                "{}",
                src.display()
            );
            at += 512;
            assert_eq!(&tar[at..at + bytes.len()], &bytes[..], "{}", src.display());
            at += bytes.len().div_ceil(512) * 512;
        }
        assert_eq!(tar.len(), at + 1024);
    }

    /// Counts what passes and keeps the first `keep` bytes.
    struct Head {
        keep: usize,
        head: Vec<u8>,
        total: u64,
    }

    impl Write for Head {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.keep.saturating_sub(self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..room]);
            self.total += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn files_over_8_gib_get_a_pax_size_record() {
        // On tmpfs a hole reads as the zero page: nothing is allocated.
        let t = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let src = t.path().join("sparse");
        let size = MAX_EPOCH + 2; // one byte past what 11 octal digits hold
        let f = File::create(&src).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        // Digests known, so the pass only reads (sparse zeros) and writes.
        let meta = std::fs::metadata(&src).unwrap();
        crate::digest::remember(
            &src,
            crate::digest::Stamp::of(&meta),
            crate::digest::Digests {
                sha1: [0; 20],
                sha256: [0; 32],
            },
        );
        let mut sink = Head {
            keep: 2048,
            head: Vec::new(),
            total: 0,
        };
        write_tar(&plan_of(&src), 0, &mut sink).unwrap();
        let pax = tar::Header::from_byte_slice(&sink.head[..512]);
        assert_eq!(pax.entry_type(), EntryType::XHeader);
        let records = &sink.head[512..512 + pax.size().unwrap() as usize];
        let want = format!("size={size}\n");
        assert!(
            String::from_utf8_lossy(records).contains(&want),
            "{}",
            String::from_utf8_lossy(records)
        );
        let real = tar::Header::from_byte_slice(&sink.head[1024..1536]);
        assert_eq!(real.entry_type(), EntryType::Regular);
        assert_eq!(real.path().unwrap().to_str(), Some("data"));
        let padded = size.div_ceil(512) * 512;
        assert_eq!(sink.total, 1536 + padded + 1024);
    }
}
