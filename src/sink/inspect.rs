//! Reading an OCI image layout back: platforms, digests, config and the
//! files of each layer, with every digest checked on the way.

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, FoundImage, Layout};

/// One file of a layer.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    /// "file", "dir", "symlink", "hardlink", "fifo", "char", "block" or
    /// "other".
    #[serde(rename = "type")]
    pub kind: String,
    /// Octal, e.g. "0755".
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub diff_id: Digest,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    pub platform: String,
    pub manifest: Digest,
    pub config_digest: Digest,
    pub config: serde_json::Value,
    pub layers: Vec<LayerReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The `org.opencontainers.image.ref.name` of the top descriptor.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub images: Vec<ImageReport>,
}

/// Read and check every image in a layout.
pub fn inspect(layout: &Path) -> Result<Vec<Report>> {
    let layout = Layout::open(layout)?;
    let mut reports = Vec::new();
    for (top, found) in layout.images()? {
        let mut images = Vec::new();
        for f in &found {
            images.push(image(&layout, f)?);
        }
        reports.push(Report {
            reference: top.annotations.get(oci::ANNOTATION_REF_NAME).cloned(),
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            images,
        });
    }
    Ok(reports)
}

fn image(layout: &Layout, f: &FoundImage) -> Result<ImageReport> {
    let fail = |m: String| Error::msg(format!("inspect manifest {}: {m}", f.descriptor.digest));
    let raw_config: serde_json::Value =
        serde_json::from_slice(&f.config_raw).map_err(|e| fail(format!("config: {e}")))?;
    if f.manifest.layers.len() != f.config.rootfs.diff_ids.len() {
        return Err(fail("layer count differs from rootfs.diff_ids".into()));
    }
    let mut layers = Vec::new();
    for (l, diff_id) in f.manifest.layers.iter().zip(&f.config.rootfs.diff_ids) {
        let (files, actual) = read_layer(layout, l)?;
        if &actual != diff_id {
            return Err(fail(format!(
                "layer {}: uncompressed content hashes to {actual}, config says {diff_id}",
                l.digest
            )));
        }
        layers.push(LayerReport {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: diff_id.clone(),
            files,
        });
    }
    Ok(ImageReport {
        platform: f.platform.display(),
        manifest: f.descriptor.digest.clone(),
        config_digest: f.manifest.config.digest.clone(),
        config: raw_config,
        layers,
    })
}

/// List a layer's entries and hash its uncompressed bytes.
fn read_layer(layout: &Layout, l: &Descriptor) -> Result<(Vec<FileEntry>, Digest)> {
    let fail = |m: String| Error::msg(format!("read layer {}: {m}", l.digest));
    let raw = layout.layer_reader(l)?;
    let mut hashing = HashReader {
        inner: raw,
        hasher: Sha256::new(),
    };
    let mut files = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for e in archive.entries().map_err(|e| fail(e.to_string()))? {
            let e = e.map_err(|e| fail(e.to_string()))?;
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Regular => "file",
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Link => "hardlink",
                tar::EntryType::Fifo => "fifo",
                tar::EntryType::Char => "char",
                tar::EntryType::Block => "block",
                _ => "other",
            };
            let path = e.path().map_err(|e| fail(e.to_string()))?;
            let path = format!("/{}", path.to_string_lossy().trim_end_matches('/'));
            files.push(FileEntry {
                path,
                kind: kind.into(),
                mode: format!("{:04o}", h.mode().unwrap_or(0) & 0o7777),
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                size: e.size(),
                mtime: h.mtime().unwrap_or(0),
                target: e
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().into_owned()),
            });
        }
    }
    // Hash whatever follows the end-of-archive marker too.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| fail(e.to_string()))?;
    Ok((
        files,
        Digest::from_sha256(hashing.hasher.finalize().as_slice()),
    ))
}

struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Human-readable report.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "{} {} ({})\n",
            r.reference.as_deref().unwrap_or("<untagged>"),
            r.digest,
            r.media_type
        ));
        for i in &r.images {
            out.push_str(&format!(
                "\nplatform {}\n  manifest {}\n  config   {}\n",
                i.platform, i.manifest, i.config_digest
            ));
            if let Some(c) = i.config.get("config") {
                for key in [
                    "Entrypoint",
                    "Cmd",
                    "Env",
                    "WorkingDir",
                    "User",
                    "ExposedPorts",
                    "Labels",
                ] {
                    if let Some(v) = c.get(key) {
                        out.push_str(&format!("  {key:<10} {v}\n"));
                    }
                }
            }
            if let Some(created) = i.config.get("created").and_then(|v| v.as_str()) {
                out.push_str(&format!("  Created    {created}\n"));
            }
            for l in &i.layers {
                out.push_str(&format!(
                    "  layer {} ({} bytes, {} entries)\n",
                    l.digest,
                    l.size,
                    l.files.len()
                ));
                for f in &l.files {
                    let tail = match &f.target {
                        Some(t) => format!(" -> {t}"),
                        None => String::new(),
                    };
                    out.push_str(&format!(
                        "    {} {:>5}:{:<5} {:>10}  {}{tail}\n",
                        f.mode, f.uid, f.gid, f.size, f.path
                    ));
                }
            }
        }
    }
    out
}
