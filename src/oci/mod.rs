//! OCI image types (image-spec v1.1) and the image layout writer.
//!
//! JSON is written canonically: through `serde_json::Value`, whose maps are
//! sorted (`BTreeMap`), compact, no trailing newline. Blobs go to a
//! temporary file, are hashed while written, fsynced and renamed into
//! `blobs/sha256/<hex>`; `index.json` is written last.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoResultExt, Result};
use crate::layer::digest_of;
use crate::platform::Platform;

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const LAYOUT_VERSION: &str = "1.0.0";

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// REQUIRED: the media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// REQUIRED: "sha256:<hex>".
    pub digest: String,
    /// REQUIRED: size in bytes.
    pub size: u64,
    /// OPTIONAL: only in an index's manifests.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<OciPlatform>,
    /// OPTIONAL.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    /// OPTIONAL: the type of an artifact manifest this points at.
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A plain descriptor of some content.
    pub fn of(media_type: &str, digest: String, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl From<&Platform> for OciPlatform {
    fn from(p: &Platform) -> Self {
        OciPlatform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
}

impl OciPlatform {
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    /// OPTIONAL: set on artifact manifests (an attached SBOM).
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
    /// OPTIONAL: the manifest an artifact refers to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Descriptor>,
}

pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const MEDIA_TYPE_SPDX: &str = "application/spdx+json";

/// An image index (also the shape of a layout's `index.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// The image configuration (the parts bareroot writes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageConfigJson {
    /// OPTIONAL: combined date and time the image was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    /// REQUIRED.
    pub architecture: String,
    /// REQUIRED.
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RuntimeConfig,
    /// REQUIRED.
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<History>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub exposed_ports: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub stop_signal: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    /// REQUIRED: "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// REQUIRED: sha256 of each uncompressed layer.
    pub diff_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
}

/// Canonical JSON bytes: sorted keys, compact.
pub fn canonical_json<T: Serialize>(v: &T) -> Vec<u8> {
    let value = serde_json::to_value(v).expect("OCI types always serialize");
    serde_json::to_vec(&value).expect("a JSON value always serializes")
}

/// Is this a well-formed sha256 digest ("sha256:" + 64 lowercase hex)?
/// Checked before a digest read from anywhere becomes a path.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .map(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .unwrap_or(false)
}

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
    pub fn commit_later(&self, file: File, temp: PathBuf, digest: String) -> PendingBlob {
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
        let dest = self.blob_path(&digest)?;
        fs::rename(&temp, &dest).with_path("rename blob into", &dest)
    }

    /// Put an existing blob file (a cached layer) in the layout under
    /// `digest`: a hard link when possible, else a copy.
    pub fn import_blob(&mut self, src: &Path, digest: &str) -> Result<()> {
        let dest = self.blob_path(digest)?;
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

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        if !valid_digest(digest) {
            return Err(Error::msg(format!("write blob: invalid digest {digest:?}")));
        }
        Ok(self.root.join("blobs/sha256").join(&digest[7..]))
    }

    /// Store raw bytes as a blob and describe them (synced by
    /// [`LayoutWriter::finish`]).
    pub fn put_bytes(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let digest = digest_of(bytes);
        let (mut f, temp) = self.temp_file()?;
        f.write_all(bytes).with_path("write", &temp)?;
        let dest = self.blob_path(&digest)?;
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
    digest: String,
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

/// Read a blob of a layout, checking its digest is well formed first and its
/// content hashes to it.
pub fn read_blob(layout: &Path, digest: &str) -> Result<Vec<u8>> {
    if !valid_digest(digest) {
        return Err(Error::msg(format!(
            "read blob from {}: invalid digest {digest:?}",
            layout.display()
        )));
    }
    let p = layout.join("blobs/sha256").join(&digest[7..]);
    let bytes = fs::read(&p).with_path("read blob", &p)?;
    if digest_of(&bytes) != digest {
        return Err(Error::msg(format!(
            "read blob {}: content does not match its digest",
            p.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let d = Descriptor::of("m", "sha256:x".into(), 1);
        assert_eq!(
            String::from_utf8(canonical_json(&d)).unwrap(),
            r#"{"digest":"sha256:x","mediaType":"m","size":1}"#
        );
    }

    #[test]
    fn digests_are_validated() {
        assert!(valid_digest(&digest_of(b"")));
        assert!(!valid_digest("sha256:../../etc/passwd"));
        assert!(!valid_digest(&digest_of(b"").to_uppercase()));
    }
}

/// One image found in a layout.
#[derive(Clone, Debug)]
pub struct FoundImage {
    /// The top descriptor's ref name (tag), if any.
    pub reference: Option<String>,
    /// Its platform: from the descriptor, else from the config.
    pub platform: OciPlatform,
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfigJson,
    /// The config blob exactly as stored.
    pub config_raw: Vec<u8>,
}

/// Every image of a layout (through nested indexes), digests checked.
pub fn images(layout: &Path) -> Result<Vec<(Descriptor, Vec<FoundImage>)>> {
    let fail = |m: String| Error::msg(format!("read image layout {}: {m}", layout.display()));
    let index_path = layout.join("index.json");
    let bytes = fs::read(&index_path).with_path("read", &index_path)?;
    let index: Index =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for top in index.manifests.iter().filter(|d| d.artifact_type.is_none()) {
        let reference = top.annotations.get(ANNOTATION_REF_NAME).cloned();
        let mut found = Vec::new();
        collect(layout, top, &reference, &mut found, 0)?;
        out.push((top.clone(), found));
    }
    Ok(out)
}

fn collect(
    layout: &Path,
    desc: &Descriptor,
    reference: &Option<String>,
    out: &mut Vec<FoundImage>,
    depth: usize,
) -> Result<()> {
    let fail = |m: String| Error::msg(format!("read {} {}: {m}", desc.media_type, desc.digest));
    if depth > 4 {
        return Err(fail("indexes nested too deeply".into()));
    }
    let bytes = read_blob(layout, &desc.digest)?;
    match desc.media_type.as_str() {
        MEDIA_TYPE_INDEX => {
            let index: Index = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
            for m in index.manifests.iter().filter(|d| d.artifact_type.is_none()) {
                collect(layout, m, reference, out, depth + 1)?;
            }
        }
        MEDIA_TYPE_MANIFEST => {
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
            let config_raw = read_blob(layout, &manifest.config.digest)?;
            let config: ImageConfigJson =
                serde_json::from_slice(&config_raw).map_err(|e| fail(format!("config: {e}")))?;
            let platform = desc.platform.clone().unwrap_or_else(|| OciPlatform {
                architecture: config.architecture.clone(),
                os: config.os.clone(),
                variant: config.variant.clone(),
            });
            out.push(FoundImage {
                reference: reference.clone(),
                platform,
                descriptor: desc.clone(),
                manifest,
                config,
                config_raw,
            });
        }
        other => return Err(fail(format!("unsupported media type {other}"))),
    }
    Ok(())
}
