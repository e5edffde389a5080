//! Writing an OCI image layout: blobs go to a temporary file inside the
//! layout, are hashed while written, fsynced and renamed into
//! `blobs/sha256/<hex>` ([`LayoutWriter`]); `index.json` is written last, so
//! a layout with an index.json is complete. The whole layout is written in a
//! staging directory beside the output and swapped into place in one step
//! ([`Staging`]), under a lock on the output's parent.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{canonical_json, Descriptor, Index, LAYOUT_VERSION, MEDIA_TYPE_INDEX};
use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};

/// A directory being filled as an OCI image layout.
pub struct LayoutWriter {
    root: PathBuf,
    seq: u32,
    /// Files written but not yet fsync'ed: [`LayoutWriter::finish`] syncs
    /// them. Syncing a small file at once would wait for a large layer
    /// still being synced ([`LayoutWriter::commit_later`]).
    unsynced: Vec<(File, PathBuf)>,
}

impl LayoutWriter {
    /// Start a layout in `root` (which must exist and be empty).
    pub fn new(root: &Path) -> Result<LayoutWriter> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).with_path("create directory", &blobs)?;
        Ok(LayoutWriter {
            root: root.to_path_buf(),
            seq: 0,
            unsynced: Vec::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new temporary file inside the layout, for a blob being written.
    pub fn temp_file(&mut self) -> Result<(File, PathBuf)> {
        self.seq += 1;
        let p = self.root.join(format!("blobs/.tmp-{}", self.seq));
        let f = File::create(&p).with_path("create", &p)?;
        Ok((f, p))
    }

    /// Move a finished temporary file to its content address, in two
    /// halves: the fsync starts now on another thread (a large layer takes
    /// a while to reach the disk), and [`LayoutWriter::commit_pending`]
    /// waits for it and moves the file.
    pub fn commit_later(&self, file: File, temp: PathBuf, digest: Digest) -> PendingBlob {
        let file = std::sync::Arc::new(file);
        let on_thread = file.clone();
        // No thread to be had (a tight pids limit): synced when committed.
        let sync = std::thread::Builder::new()
            .spawn(move || on_thread.sync_all())
            .ok();
        PendingBlob {
            sync,
            file,
            temp,
            digest,
        }
    }

    /// Finish a [`LayoutWriter::commit_later`].
    pub fn commit_pending(&self, pending: PendingBlob) -> Result<()> {
        let PendingBlob {
            sync,
            file,
            temp,
            digest,
        } = pending;
        match sync {
            Some(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => file.sync_all(),
        }
        .with_path("sync", &temp)?;
        drop(file);
        let dest = self.blob_path(&digest);
        fs::rename(&temp, &dest).with_path("rename blob into", &dest)
    }

    /// Put an existing blob file (a cached layer) in the layout under
    /// `digest`: a hard link when possible, else a copy.
    pub fn import_blob(&mut self, src: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if fs::hard_link(src, &dest).is_ok() {
            return Ok(());
        }
        self.seq += 1;
        let tmp = self.root.join(format!("blobs/.tmp-{}", self.seq));
        fs::copy(src, &tmp).with_path("copy cached layer to", &tmp)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_path("sync", &tmp)?;
        fs::rename(&tmp, &dest).with_path("rename blob into", &dest)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Store raw bytes as a blob and describe them (synced by
    /// [`LayoutWriter::finish`]).
    pub fn put_bytes(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = Digest::of(bytes);
        let (mut f, temp) = self.temp_file()?;
        f.write_all(bytes).with_path("write", &temp)?;
        let dest = self.blob_path(&digest);
        fs::rename(&temp, &dest).with_path("rename blob into", &dest)?;
        self.unsynced.push((f, dest));
        Ok(Descriptor::of(media_type, digest, bytes.len() as u64))
    }

    /// Store a value as canonical JSON in a blob and describe it.
    pub fn put_json<T: Serialize>(&mut self, media_type: &str, v: &T) -> Result<Descriptor> {
        self.put_bytes(media_type, &canonical_json(v))
    }

    /// Write a file of the layout that is not a blob (`name` under its
    /// root), synced by [`LayoutWriter::finish`].
    pub fn put_file(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(name);
        let mut f = File::create(&path).with_path("create", &path)?;
        f.write_all(bytes).with_path("write", &path)?;
        self.unsynced.push((f, path));
        Ok(())
    }

    /// Write a file of the layout that is not a blob (`name` under its
    /// root) as `write` streams it (through a buffer; synced by
    /// [`LayoutWriter::finish`]); `write`'s answer is returned. The path is
    /// [`LayoutWriter::file_path`].
    pub fn put_file_with<T>(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut std::io::BufWriter<&File>) -> Result<T>,
    ) -> Result<T> {
        let path = self.root.join(name);
        let f = File::create(&path).with_path("create", &path)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &f);
        let answer = write(&mut w)?;
        w.flush().with_path("write", &path)?;
        drop(w);
        self.unsynced.push((f, path));
        Ok(answer)
    }

    /// Put the file at `src` into the layout as `name`: hard-linked when it
    /// can be (the same bytes, not copied), else copied.
    pub fn put_file_from(&mut self, name: &str, src: &Path) -> Result<()> {
        let path = self.root.join(name);
        let _ = fs::remove_file(&path);
        if fs::hard_link(src, &path).is_err() {
            fs::copy(src, &path).with_path("copy into", &path)?;
        }
        let f = File::open(&path).with_path("open", &path)?;
        self.unsynced.push((f, path));
        Ok(())
    }

    /// Where a file written by [`LayoutWriter::put_file_with`] is.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Store a blob with the content of the layout's file `name` (a hard
    /// link to it: the same bytes, not copied) and describe it.
    pub fn put_blob_of_file(&mut self, media_type: &str, name: &str) -> Result<Descriptor> {
        let path = self.root.join(name);
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        let mut size = 0u64;
        crate::digest::read_through(&path, |b| {
            sha2::Digest::update(&mut h, b);
            size += b.len() as u64;
        })?;
        let digest = Digest::from_sha256(&sha2::Digest::finalize(h));
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            fs::hard_link(&path, &dest).with_path("link blob", &dest)?;
        }
        Ok(Descriptor::of(media_type, digest, size))
    }

    /// Write `oci-layout` and then `index.json` pointing at `top`: the last
    /// files of a layout, so a layout with an index.json is complete.
    pub fn finish(self, top: Descriptor, referrers: Vec<Descriptor>) -> Result<()> {
        // Together: the file system can commit them at once. (A file no
        // thread could be started for is synced here.)
        std::thread::scope(|s| {
            let syncs: Vec<_> = self
                .unsynced
                .iter()
                .map(|(f, path)| {
                    let sync = move || f.sync_all().with_path("sync", path);
                    std::thread::Builder::new()
                        .spawn_scoped(s, sync)
                        .map_err(|_| sync)
                })
                .collect();
            syncs.into_iter().try_for_each(|t| match t {
                Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(sync) => sync(),
            })
        })?;
        let layout = self.root.join("oci-layout");
        let text = canonical_json(&serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }));
        write_synced(&layout, &text)?;
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_INDEX.into()),
            manifests: std::iter::once(top).chain(referrers).collect(),
            annotations: BTreeMap::new(),
        };
        write_synced(&self.root.join("index.json"), &canonical_json(&index))?;
        sync_dir(&self.root.join("blobs/sha256"))?;
        sync_dir(&self.root)
    }
}

/// A blob being fsync'ed ([`LayoutWriter::commit_later`]).
#[derive(Debug)]
pub struct PendingBlob {
    sync: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    file: std::sync::Arc<File>,
    temp: PathBuf,
    digest: Digest,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_path("create", path)?;
    f.write_all(bytes).with_path("write", path)?;
    f.sync_all().with_path("sync", path)
}

/// fsync a directory so renames inside it are durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .with_path("sync directory", path)
}

/// A layout being written next to its final place. Dropped without
/// `commit`, it is removed and the previous output stays as it was.
pub struct Staging {
    /// The directory the new layout is written in.
    pub dir: PathBuf,
    output: PathBuf,
    /// Parent directories this build created, outermost first: removed
    /// again if the build fails.
    created: Vec<PathBuf>,
    done: bool,
    /// Held until the build is done or abandoned.
    _lock: OutputLock,
}

impl Staging {
    /// Lock the output's parent and make the staging directory beside
    /// `output` (refused if `output` is something bareroot must not
    /// replace).
    pub fn new(output: &Path) -> Result<Staging> {
        let name = output
            .file_name()
            .ok_or_else(|| {
                Error::msg(format!(
                    "write image to {}: not a directory name",
                    output.display()
                ))
            })?
            .to_string_lossy()
            .into_owned();
        check_output(output)?;
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut created = Vec::new();
        let mut missing = Some(parent.as_path());
        while let Some(p) = missing {
            if p.as_os_str().is_empty() || p.exists() {
                break;
            }
            created.push(p.to_path_buf());
            missing = p.parent();
        }
        created.reverse();
        fs::create_dir_all(&parent).with_path("create directory", &parent)?;
        let lock = OutputLock::acquire(&parent)?;
        // Again under the lock: another build may have written meanwhile.
        if let Err(e) = check_output(output) {
            for d in created.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            return Err(e);
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = parent.join(format!(".{name}.bareroot-{}-{nanos}", std::process::id()));
        fs::create_dir(&dir).with_path("create directory", &dir)?;
        Ok(Staging {
            dir,
            output: output.to_path_buf(),
            created,
            done: false,
            _lock: lock,
        })
    }

    /// Put the finished layout in place of the output.
    pub fn commit(mut self) -> Result<()> {
        let parent = self.dir.parent().unwrap_or(Path::new(".")).to_path_buf();
        // An existing output is swapped with the new layout in one step
        // (renameat2 RENAME_EXCHANGE), so at every instant --output is the
        // previous image or the complete new one; the old one then goes.
        if self.output.exists() {
            exchange(&self.dir, &self.output)
                .map_err(|e| Error::io("replace previous image at", &self.output, e))?;
            self.done = true;
            fs::remove_dir_all(&self.dir).with_path("remove previous image", &self.dir)?;
        } else {
            fs::rename(&self.dir, &self.output).with_path("move image into", &self.output)?;
            self.done = true;
        }
        sync_dir(&parent)
    }
}

/// Atomically swap two paths of one filesystem.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; no memory is handed over.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Refuse outputs bareroot must not replace: a symlink, a file, or a
/// directory that is neither empty nor an OCI image layout.
fn check_output(output: &Path) -> Result<()> {
    match fs::symlink_metadata(output) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::msg(format!(
                "write image to {}: it is a symlink; give the real directory",
                output.display()
            )))
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::msg(format!(
                "write image to {}: it exists and is not a directory",
                output.display()
            )))
        }
        Ok(_) => {
            let is_layout = output.join("oci-layout").is_file();
            let empty = fs::read_dir(output)
                .with_path("read directory", output)?
                .next()
                .is_none();
            if !is_layout && !empty {
                return Err(Error::msg(format!(
                    "write image to {}: it exists and is not an OCI image layout; refusing to replace it",
                    output.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat", output, e)),
    }
    Ok(())
}

/// An exclusive lock on the output's parent directory (flock on the
/// directory itself, so no file is left behind), held for a whole build:
/// two builds to one output take turns instead of interleaving.
struct OutputLock {
    _dir: fs::File,
}

impl OutputLock {
    fn acquire(parent: &Path) -> Result<OutputLock> {
        let dir = fs::File::open(parent).with_path("open directory", parent)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io("lock", parent, std::io::Error::last_os_error()));
        }
        Ok(OutputLock { _dir: dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
            for d in self.created.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        }
    }
}
