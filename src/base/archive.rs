//! Image archives unpacked for a base: an oci-archive (a tar of an image
//! layout) and a docker-archive (`docker save`). Only the files an image
//! needs are taken, under names checked first; nothing else is written.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::oci::{self, Descriptor, ImageConfigJson, Manifest};

use super::MAX_JSON;

/// Names in an archive longer than this are refused.
const MAX_NAME: usize = 4096;

/// Unpack the image layout in `file` into `dir`: `oci-layout`,
/// `index.json` and the blobs (named by a valid digest), nothing else.
pub fn unpack_oci_archive(file: &Path, dir: &Path) -> Result<()> {
    let f = File::open(file).with_path("open", file)?;
    let fail = |m: String| Error::msg(format!("read oci-archive {}: {m}", file.display()));
    fs::create_dir_all(dir.join("blobs/sha256")).with_path("create directory", dir)?;
    let mut archive = tar::Archive::new(io::BufReader::new(f));
    let mut has_index = false;
    for entry in archive.entries().map_err(|e| fail(e.to_string()))? {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry_name(&entry).map_err(&fail)?;
        let dest = match name.as_str() {
            "index.json" | "oci-layout" => {
                if entry.size() > MAX_JSON {
                    return Err(fail(format!("{name} is larger than 4 MiB")));
                }
                has_index |= name == "index.json";
                dir.join(&name)
            }
            n => match n.strip_prefix("blobs/sha256/") {
                Some(hex) if Digest::parse(&format!("sha256:{hex}")).is_ok() => {
                    dir.join("blobs/sha256").join(hex)
                }
                _ => continue,
            },
        };
        let mut out = File::create(&dest).with_path("create", &dest)?;
        io::copy(&mut entry, &mut out).map_err(|e| fail(format!("{name}: {e}")))?;
    }
    if !has_index {
        return Err(fail("no index.json: not an OCI image archive".into()));
    }
    Ok(())
}

/// An entry's name without `./`, refused when it could leave the archive.
fn entry_name<R: Read>(entry: &tar::Entry<R>) -> std::result::Result<String, String> {
    let raw = entry.path_bytes();
    let name = String::from_utf8_lossy(&raw).into_owned();
    if name.len() > MAX_NAME {
        return Err("an entry's name is too long".into());
    }
    let trimmed = name.trim_start_matches("./").trim_start_matches('/');
    if trimmed.split('/').any(|c| c == "..") {
        return Err(format!("entry {name:?} leaves the archive"));
    }
    Ok(trimmed.to_string())
}

#[derive(Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Unpack `docker save` output into `dir` as blobs, and write an OCI
/// manifest over them; returns its descriptor. Layers keep their bytes
/// (a tar, or a gzipped tar), so their digests are those of the files.
pub fn unpack_docker_archive(file: &Path, dir: &Path) -> Result<Descriptor> {
    let f = File::open(file).with_path("open", file)?;
    let fail = |m: String| Error::msg(format!("read docker-archive {}: {m}", file.display()));
    let files = dir.join("files");
    fs::create_dir_all(dir.join("blobs/sha256")).with_path("create directory", dir)?;
    fs::create_dir_all(&files).with_path("create directory", &files)?;
    // Every regular file, under a flat name, with its digest.
    let mut stored: std::collections::BTreeMap<String, (Digest, u64)> = Default::default();
    let mut links: std::collections::BTreeMap<String, String> = Default::default();
    let mut archive = tar::Archive::new(io::BufReader::new(f));
    for (i, entry) in archive
        .entries()
        .map_err(|e| fail(e.to_string()))?
        .enumerate()
    {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::Symlink {
            // Older `docker save` links a layer it holds twice
            // (`b/layer.tar -> ../a/layer.tar`).
            let name = entry_name(&entry).map_err(&fail)?;
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
            let joined = crate::loader::sysroot::normalize(&Path::new("/").join(dir).join(&target));
            links.insert(
                name,
                joined.to_string_lossy().trim_start_matches('/').to_string(),
            );
            continue;
        }
        if kind != tar::EntryType::Regular {
            continue;
        }
        let name = entry_name(&entry).map_err(&fail)?;
        let tmp = files.join(i.to_string());
        let mut out = crate::layer::HashWriter::new(File::create(&tmp).with_path("create", &tmp)?);
        io::copy(&mut entry, &mut out).map_err(|e| fail(format!("{name}: {e}")))?;
        let (digest, size, mut w) = out.finish();
        w.flush().with_path("write", &tmp)?;
        let dest = dir.join("blobs/sha256").join(digest.hex());
        fs::rename(&tmp, &dest).with_path("rename into", &dest)?;
        stored.insert(name, (digest, size));
    }
    let (mdigest, msize) = stored
        .get("manifest.json")
        .cloned()
        .ok_or_else(|| fail("no manifest.json: not a docker-archive".into()))?;
    if msize > MAX_JSON {
        return Err(fail("manifest.json is larger than 4 MiB".into()));
    }
    let read = |d: &Digest| {
        let p = dir.join("blobs/sha256").join(d.hex());
        fs::read(&p).with_path("read", &p)
    };
    let list: Vec<DockerManifest> = serde_json::from_slice(&read(&mdigest)?)
        .map_err(|e| fail(format!("manifest.json: {e}")))?;
    let image = match list.as_slice() {
        [one] => one,
        [] => return Err(fail("manifest.json lists no image".into())),
        _ => return Err(fail("manifest.json lists several images; save one".into())),
    };
    let blob = |name: &str| {
        let mut n = name.trim_start_matches("./").to_string();
        for _ in 0..8 {
            match links.get(&n) {
                Some(t) => n = t.clone(),
                None => break,
            }
        }
        stored.get(&n).cloned().ok_or_else(|| {
            fail(format!(
                "manifest.json names {name:?}, which the archive lacks"
            ))
        })
    };
    let (cdigest, csize) = blob(&image.config)?;
    if csize > MAX_JSON {
        return Err(fail("the config is larger than 4 MiB".into()));
    }
    let _: ImageConfigJson =
        serde_json::from_slice(&read(&cdigest)?).map_err(|e| fail(format!("config: {e}")))?;
    let mut layers = Vec::new();
    for l in &image.layers {
        let (d, size) = blob(l)?;
        let mut head = [0u8; 2];
        let p = dir.join("blobs/sha256").join(d.hex());
        let n = File::open(&p)
            .and_then(|mut f| f.read(&mut head))
            .with_path("read", &p)?;
        let media = if n == 2 && head == [0x1f, 0x8b] {
            crate::layer::MEDIA_TYPE_GZIP
        } else {
            crate::layer::MEDIA_TYPE_TAR
        };
        layers.push(Descriptor::of(media, d, size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config: Descriptor::of(oci::MEDIA_TYPE_CONFIG, cdigest, csize),
        layers,
        annotations: Default::default(),
        artifact_type: None,
        subject: None,
    };
    put_json(
        dir,
        oci::MEDIA_TYPE_MANIFEST,
        &oci::canonical_json(&manifest),
    )
}

/// Store `bytes` as a blob under `dir` (temp file, renamed into place).
pub fn put_json(dir: &Path, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
    let digest = Digest::of(bytes);
    let dest = dir.join("blobs/sha256").join(digest.hex());
    if !dest.exists() {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).with_path("create directory", &blobs)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&blobs).with_path("create in", &blobs)?;
        tmp.write_all(bytes).with_path("write", tmp.path())?;
        readable(tmp.as_file(), tmp.path())?;
        tmp.persist(&dest)
            .map_err(|e| Error::io("rename into", &dest, e.error))?;
    }
    Ok(Descriptor::of(media_type, digest, bytes.len() as u64))
}

/// Blobs are readable by all (a build links them into its layout).
pub fn readable(f: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o644))
        .with_path("set the mode of", path)
}
