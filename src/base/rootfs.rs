//! A `rootfs:` tarball as a base: its entries, in their order, with their
//! names (without `./`), types, modes, owners, times, link targets, device
//! numbers and extended attributes kept, written as one layer compressed
//! like bareroot's own. The same tarball gives the same layer every time;
//! the layer is kept in the store under the tarball's digest, so a second
//! build converts nothing.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::layer::compress::{Compression, Compressor};
use crate::layer::HashWriter;
use crate::oci::{self, Descriptor, History, ImageConfigJson, Manifest, RootFs};
use crate::platform::Platform;

/// Bumped when the conversion's bytes change.
const FORMAT: &str = "bareroot-rootfs-layer-2";

/// A tarball made into a layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Made {
    /// The tarball's own digest (of its bytes as stored, compressed or not).
    pub tarball: Digest,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

/// Make (or find in `store`) the layer of `file`.
pub fn layer(file: &Path, store: &Path, compression: Compression, jobs: usize) -> Result<Made> {
    let fail = |m: String| Error::msg(format!("read rootfs {}: {m}", file.display()));
    let tarball = crate::digest::of(file)?.sha256;
    let tarball = Digest::from_sha256(&tarball);
    let key = Digest::of(format!("{FORMAT}\n{tarball}\n{}", compression.describe()).as_bytes());
    let index = store.join("rootfs").join(key.hex());
    let blobs = store.join("blobs/sha256");
    if let Some(made) = fs::read(&index)
        .ok()
        .and_then(|b| serde_json::from_slice::<Made>(&b).ok())
    {
        if fs::metadata(blobs.join(made.digest.hex())).is_ok_and(|m| m.len() == made.size) {
            return Ok(made);
        }
    }
    fs::create_dir_all(&blobs).with_path("create directory", &blobs)?;
    let input = decompressed(file).map_err(|e| fail(e.to_string()))?;
    let tmp = tempfile::NamedTempFile::new_in(&blobs).with_path("create in", &blobs)?;
    let out = HashWriter::new(io::BufWriter::new(
        tmp.reopen().with_path("open", tmp.path())?,
    ));
    let (diff_id, digest, size) = match compression {
        Compression::None => {
            let mut tar = HashWriter::new(out);
            convert(input, &mut tar).map_err(&fail)?;
            let (diff_id, _, out) = tar.finish();
            let (digest, size, mut w) = out.finish();
            w.flush().with_path("write", tmp.path())?;
            (diff_id, digest, size)
        }
        c => {
            let compressor = Compressor::new(c, jobs, out).with_path("compress", tmp.path())?;
            let mut tar = HashWriter::new(io::BufWriter::with_capacity(256 << 10, compressor));
            convert(input, &mut tar).map_err(&fail)?;
            let (diff_id, _, buffered) = tar.finish();
            let compressor = buffered
                .into_inner()
                .map_err(|e| Error::io("compress", tmp.path(), e.into_error()))?;
            let out = compressor.finish().with_path("compress", tmp.path())?;
            let (digest, size, mut w) = out.finish();
            w.flush().with_path("write", tmp.path())?;
            (diff_id, digest, size)
        }
    };
    let dest = blobs.join(digest.hex());
    super::archive::readable(tmp.as_file(), tmp.path())?;
    tmp.persist(&dest)
        .map_err(|e| Error::io("rename into", &dest, e.error))?;
    let made = Made {
        tarball,
        digest,
        diff_id,
        size,
        media_type: compression.media_type().to_string(),
    };
    let dir = store.join("rootfs");
    fs::create_dir_all(&dir).with_path("create directory", &dir)?;
    let mut t = tempfile::NamedTempFile::new_in(&dir).with_path("create in", &dir)?;
    t.write_all(&serde_json::to_vec(&made).expect("serializes"))
        .with_path("write", t.path())?;
    t.persist(&index)
        .map_err(|e| Error::io("rename into", &index, e.error))?;
    Ok(made)
}

/// The tarball's tar stream, whatever it is compressed with (by its first
/// bytes, not its name).
fn decompressed(file: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = File::open(file)?;
    let mut head = [0u8; 6];
    let n = f.read(&mut head)?;
    drop(f);
    let f = BufReader::new(File::open(file)?);
    let h = &head[..n];
    Ok(if h.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(f)?)
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(f))
    } else {
        Box::new(f)
    })
}

/// Copy every entry of `input` to a new tar on `out`, names normalized.
fn convert<R: Read, W: Write>(input: R, out: W) -> std::result::Result<(), String> {
    use crate::oci::apply::{Metered, MAX_ENTRIES, MAX_HEADERS};
    // The tar crate reads long names and PAX records whole: while it reads
    // a member's headers, at most MAX_HEADERS may pass.
    let budget = std::rc::Rc::new(std::cell::Cell::new(None));
    let mut archive = tar::Archive::new(Metered {
        inner: input,
        budget: budget.clone(),
    });
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut entries = archive.entries().map_err(|e| e.to_string())?;
    for n in 0.. {
        budget.set(Some(MAX_HEADERS + 1024));
        let next = entries.next();
        budget.set(None);
        let Some(entry) = next else { break };
        if n >= MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let mut entry = entry.map_err(|e| e.to_string())?;
        let kind = entry.header().entry_type();
        // A global PAX header applies to what follows; it is no entry.
        if kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        let raw = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|e| format!("an entry's name is not UTF-8: {:?}", e.as_bytes()))?;
        if raw.len() > crate::oci::apply::MAX_PATH {
            return Err(format!(
                "an entry's name is longer than {} bytes",
                crate::oci::apply::MAX_PATH
            ));
        }
        let name = raw.trim_start_matches("./").trim_start_matches('/');
        let name = name.trim_end_matches('/');
        if name.is_empty() || name == "." {
            continue;
        }
        if name.split('/').any(|c| c == "..") {
            return Err(format!("entry {raw:?} leaves the root"));
        }
        let h = entry.header().clone();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(h.mode().map_err(|e| e.to_string())?);
        header.set_uid(h.uid().map_err(|e| e.to_string())?);
        header.set_gid(h.gid().map_err(|e| e.to_string())?);
        header.set_mtime(h.mtime().map_err(|e| e.to_string())?);
        if let Some(u) = h.username().ok().flatten() {
            let _ = header.set_username(u);
        }
        if let Some(g) = h.groupname().ok().flatten() {
            let _ = header.set_groupname(g);
        }
        let (major, minor) = if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        header
            .set_device_major(major)
            .and_then(|_| header.set_device_minor(minor))
            .map_err(|e| e.to_string())?;
        let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions() {
            Ok(Some(exts)) => exts
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let k = e.key().ok()?;
                    k.starts_with("SCHILY.xattr.")
                        .then(|| (k.to_string(), e.value_bytes().to_vec()))
                })
                .collect(),
            _ => Vec::new(),
        };
        if !xattrs.is_empty() {
            builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(|e| e.to_string())?;
        }
        let dir_name;
        let path = if kind == tar::EntryType::Directory {
            dir_name = format!("{name}/");
            dir_name.as_str()
        } else {
            name
        };
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = match entry.link_name_bytes() {
                    Some(b) => String::from_utf8(b.into_owned())
                        .map_err(|_| format!("{raw}: the link target is not UTF-8"))?,
                    None => String::new(),
                };
                let target = if kind == tar::EntryType::Link {
                    target
                        .trim_start_matches("./")
                        .trim_start_matches('/')
                        .to_string()
                } else {
                    target
                };
                header.set_size(0);
                builder
                    .append_link(&mut header, path, &target)
                    .map_err(|e| format!("{raw}: {e}"))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(entry.size());
                builder
                    .append_data(&mut header, path, &mut entry)
                    .map_err(|e| format!("{raw}: {e}"))?;
            }
            tar::EntryType::Directory
            | tar::EntryType::Char
            | tar::EntryType::Block
            | tar::EntryType::Fifo => {
                header.set_size(0);
                builder
                    .append_data(&mut header, path, io::empty())
                    .map_err(|e| format!("{raw}: {e}"))?;
            }
            // Long-name and PAX records are read into the entries they
            // describe; anything else has no place in a layer.
            other => return Err(format!("entry {raw:?} has unsupported type {other:?}")),
        }
    }
    builder.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// A manifest (and config) over the layer, for `platform`, in `store`.
pub fn image(made: &Made, file: &Path, platform: &Platform, store: &Path) -> Result<Descriptor> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let config = ImageConfigJson {
        created: None,
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: Default::default(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![made.diff_id.clone()],
        },
        history: vec![History {
            created: None,
            created_by: Some(format!("bareroot: rootfs {name}")),
            comment: Some(format!("the tarball {}", made.tarball)),
            author: None,
            empty_layer: None,
        }],
    };
    let config =
        super::archive::put_json(store, oci::MEDIA_TYPE_CONFIG, &oci::canonical_json(&config))?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config,
        layers: vec![Descriptor::of(
            &made.media_type,
            made.digest.clone(),
            made.size,
        )],
        annotations: Default::default(),
        artifact_type: None,
        subject: None,
    };
    let d = super::archive::put_json(
        store,
        oci::MEDIA_TYPE_MANIFEST,
        &oci::canonical_json(&manifest),
    )?;
    Ok(Descriptor {
        platform: Some(platform.into()),
        ..d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tarball with `./` names, a device, a hard link, a long name and
    /// an xattr, as mmdebstrap or an Alpine minirootfs writes them.
    fn header() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h
    }

    fn tarball(extra: Option<&str>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dir = header();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_mtime(5);
        b.append_data(&mut dir.clone(), "./", io::empty()).unwrap();
        b.append_data(&mut dir, "./etc/", io::empty()).unwrap();
        let mut f = header();
        f.set_mode(0o640);
        f.set_uid(0);
        f.set_gid(42);
        f.set_mtime(7);
        f.set_size(3);
        b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
            .unwrap();
        b.append_data(&mut f.clone(), "./etc/shadow", &b"abc"[..])
            .unwrap();
        let long = format!("./etc/{}", "x".repeat(150));
        b.append_data(&mut f, &long, &b"abc"[..]).unwrap();
        let mut l = header();
        l.set_entry_type(tar::EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "./etc/gshadow", "./etc/shadow")
            .unwrap();
        let mut c = header();
        c.set_entry_type(tar::EntryType::Char);
        c.set_mode(0o666);
        c.set_device_major(1).unwrap();
        c.set_device_minor(3).unwrap();
        c.set_size(0);
        b.append_data(&mut c, "./dev/null", io::empty()).unwrap();
        if let Some(name) = extra {
            let mut h = header();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn entries_keep_their_metadata_in_order_under_clean_names() {
        let mut out = Vec::new();
        convert(&tarball(None)[..], &mut out).unwrap();
        let mut again = Vec::new();
        convert(&tarball(None)[..], &mut again).unwrap();
        assert_eq!(out, again, "same tarball, same bytes");
        let mut a = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let xattr = e
                .pax_extensions()
                .unwrap()
                .map(|x| {
                    x.filter_map(|x| x.ok())
                        .map(|x| x.key().unwrap().to_string())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            seen.push((
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                h.device_minor().unwrap(),
                xattr,
            ));
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(names[0], "etc/");
        assert_eq!(names[1], "etc/shadow");
        assert!(
            names[2].starts_with("etc/xxx") && names[2].len() == 154,
            "{}",
            names[2]
        );
        assert_eq!(names[3..], ["etc/gshadow", "dev/null"]);
        assert_eq!(seen[1].2 & 0o7777, 0o640);
        assert_eq!((seen[1].3, seen[1].4), (42, 7));
        assert_eq!(seen[1].6, ["SCHILY.xattr.user.k"]);
        assert_eq!(seen[3].1, tar::EntryType::Link);
        assert_eq!((seen[4].1, seen[4].5), (tar::EntryType::Char, Some(3)));
    }

    #[test]
    fn a_name_that_leaves_the_root_is_refused() {
        let e = convert(&tarball(Some("./etc/../../escape"))[..], &mut Vec::new()).unwrap_err();
        assert!(e.contains("leaves the root") && e.contains("escape"), "{e}");
    }
}
