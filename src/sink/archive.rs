//! Archives of a built image, byte-identical across runs: `oci-archive` (the
//! layout as one tar) and `docker-archive` (the `docker save` format that
//! `docker load` and `podman load` read). Both are written through the same
//! deterministic tar writer as layers (sorted entries, explicit headers, the
//! epoch as every mtime) to a temporary file that is renamed into place.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::layer;
use crate::oci::{self, FoundImage, Layout};
use crate::plan::{Item, Plan};
use crate::recipe::ImagePath;

/// Write the layout at `layout` as an oci-archive at `dest`.
pub fn write_oci_archive(layout: &Path, dest: &Path, epoch: u64) -> Result<()> {
    write_plan(&oci_archive_plan(layout)?, dest, epoch)
}

/// The oci-archive of `layout` as a tar stream on `out` (`--load
/// containerd`).
pub fn stream_oci_archive(layout: &Path, epoch: u64, out: &mut dyn Write) -> Result<()> {
    layer::write_tar(&oci_archive_plan(layout)?, epoch, out).map(|_| ())
}

/// Every file of the layout, as archive entries.
fn oci_archive_plan(layout: &Path) -> Result<Plan> {
    let mut plan = Plan::default();
    for e in walkdir::WalkDir::new(layout).sort_by_file_name() {
        let e =
            e.map_err(|e| Error::msg(format!("read image layout {}: {e}", layout.display())))?;
        let rel = e
            .path()
            .strip_prefix(layout)
            .expect("walkdir stays under its root");
        if rel.as_os_str().is_empty() || e.file_type().is_dir() {
            continue;
        }
        add_file(&mut plan, &rel.to_string_lossy(), e.path())?;
    }
    Ok(plan)
}

/// Write one image of a layout as a docker-archive at `dest`, tagged
/// `repo_tag` ("name:tag"). Blobs keep their digests as names
/// (`blobs/sha256/<hex>`, the layout Docker 25 itself saves), so the
/// compressed layer is stored as it is.
pub fn write_docker_archive(
    layout: &Layout,
    image: &FoundImage,
    repo_tag: &str,
    dest: &Path,
    epoch: u64,
) -> Result<()> {
    let (plan, _scratch) = docker_archive_plan(layout, image, repo_tag)?;
    write_plan(&plan, dest, epoch)
}

/// The docker-archive of one image as a tar stream on `out` (`--load
/// docker|podman`: no file on disk).
pub fn stream_docker_archive(
    layout: &Layout,
    image: &FoundImage,
    repo_tag: &str,
    epoch: u64,
    out: &mut dyn Write,
) -> Result<()> {
    let (plan, _scratch) = docker_archive_plan(layout, image, repo_tag)?;
    layer::write_tar(&plan, epoch, out).map(|_| ())
}

/// A docker-archive's entries, and the directory holding its two small
/// JSON files (kept until the tar is written).
fn docker_archive_plan(
    layout: &Layout,
    image: &FoundImage,
    repo_tag: &str,
) -> Result<(Plan, tempfile::TempDir)> {
    let blob = |d: &Digest| (format!("blobs/sha256/{}", d.hex()), layout.blob_path(d));
    let mut plan = Plan::default();
    let (config_name, config_path) = blob(&image.manifest.config.digest);
    add_file(&mut plan, &config_name, &config_path)?;
    let mut layers = Vec::new();
    for l in &image.manifest.layers {
        let (name, path) = blob(&l.digest);
        add_file(&mut plan, &name, &path)?;
        layers.push(name);
    }
    let (repo, tag) = repo_tag.rsplit_once(':').unwrap_or((repo_tag, "latest"));
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [repo_tag],
        "Layers": layers,
    }]);
    let top_layer = image
        .config
        .rootfs
        .diff_ids
        .last()
        .map(|d| d.hex().to_string())
        .unwrap_or_default();
    let mut tags = BTreeMap::new();
    tags.insert(tag.to_string(), top_layer);
    let mut repositories = BTreeMap::new();
    repositories.insert(repo.to_string(), tags);

    let scratch = tempfile::Builder::new()
        .prefix("bareroot-docker-archive-")
        .tempdir()
        .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
    for (name, value) in [
        ("manifest.json", manifest),
        ("repositories", json!(repositories)),
    ] {
        let p = scratch.path().join(name);
        fs::write(&p, oci::canonical_json(&value)).with_path("write", &p)?;
        add_file(&mut plan, name, &p)?;
    }
    Ok((plan, scratch))
}

fn add_file(plan: &mut Plan, name: &str, src: &Path) -> Result<()> {
    let size = fs::metadata(src).with_path("stat", src)?.len();
    let at =
        ImagePath::new(name).map_err(|m| Error::msg(format!("write archive entry {name}: {m}")))?;
    plan.insert(&at, Item::file(src.to_path_buf(), size, name).explicit())
        .map_err(|m| Error::msg(format!("write archive entry {name}: {m}")))
}

/// Tar `plan` into `dest` through a temporary file beside it.
fn write_plan(plan: &Plan, dest: &Path, epoch: u64) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).with_path("create directory", &dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".bareroot-archive-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create temporary file in", &dir, e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        layer::write_tar(plan, epoch, &mut w)?;
        w.flush().with_path("write", dest)?;
    }
    tmp.as_file().sync_all().with_path("sync", dest)?;
    tmp.persist(dest)
        .map_err(|e| Error::io("write archive", dest, e.error))?;
    Ok(())
}
