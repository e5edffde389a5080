//! The one reader of an OCI image layout, for every command that reads one
//! (inspect, run, why, the archives, push): `index.json`, then one walk over
//! the descriptors it names (nested indexes included), each blob checked
//! against its digest before it is parsed. A digest is a [`Digest`], checked
//! when the JSON is parsed, so no string from a layout ever becomes a path
//! unchecked.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{
    Descriptor, ImageConfigJson, Index, Manifest, OciPlatform, ANNOTATION_REF_NAME,
    MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::platform::Platform;

/// Indexes nest at most this deep below `index.json`.
const MAX_DEPTH: usize = 4;

/// An image layout on disk, its `index.json` read.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    index: Index,
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

/// A parsed manifest or index met on a walk.
pub enum Node {
    Index(Index),
    Manifest(Box<Manifest>),
}

impl Layout {
    /// Blobs under `root` (`blobs/sha256/<hex>`) seen through one top
    /// descriptor, as if `index.json` listed only it (a registry pull's
    /// store, a base image).
    pub fn from_blobs(root: &Path, top: Descriptor) -> Layout {
        Layout {
            root: root.to_path_buf(),
            index: Index {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_INDEX.into()),
                manifests: vec![top],
                annotations: Default::default(),
            },
        }
    }

    /// Read `root/index.json`.
    pub fn open(root: &Path) -> Result<Layout> {
        let index_path = root.join("index.json");
        let len = std::fs::metadata(&index_path)
            .with_path("read", &index_path)?
            .len();
        if len > super::MAX_JSON {
            return Err(Error::msg(format!(
                "read image layout {}: index.json is {len} bytes, more than 4 MiB",
                root.display()
            )));
        }
        let bytes = std::fs::read(&index_path).with_path("read", &index_path)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            Error::msg(format!(
                "read image layout {}: index.json: {e}",
                root.display()
            ))
        })?;
        Ok(Layout {
            root: root.to_path_buf(),
            index,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The images `index.json` lists (not the artifacts about them).
    pub fn tops(&self) -> impl Iterator<Item = &Descriptor> {
        self.index
            .manifests
            .iter()
            .filter(|d| d.artifact_type.is_none())
    }

    /// The artifact manifests `index.json` lists (attached SBOMs).
    pub fn artifacts(&self) -> impl Iterator<Item = &Descriptor> {
        self.index
            .manifests
            .iter()
            .filter(|d| d.artifact_type.is_some())
    }

    /// Where the blob `digest` is stored (it may not exist).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// A blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let bytes = std::fs::read(&p).with_path("read blob", &p)?;
        if Digest::of(&bytes) != *digest {
            return Err(Error::msg(format!(
                "read blob {}: content does not match its digest",
                p.display()
            )));
        }
        Ok(bytes)
    }

    /// The blob `desc` names, checked against its size (before it is read)
    /// and its digest; larger than `max` bytes is refused unread.
    pub fn read_described(&self, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
        let (_, len) = self.sized(desc)?;
        if len > max {
            return Err(Error::msg(format!(
                "read blob {}: {len} bytes, more than the {max} a {} may have",
                desc.digest, desc.media_type
            )));
        }
        self.read_blob(&desc.digest)
    }

    /// The path of the blob `desc` names, and its size, checked against
    /// the descriptor's.
    fn sized(&self, desc: &Descriptor) -> Result<(PathBuf, u64)> {
        let p = self.blob_path(&desc.digest);
        let len = std::fs::metadata(&p).with_path("read blob", &p)?.len();
        if len != desc.size {
            return Err(Error::msg(format!(
                "read blob {}: {len} bytes, its descriptor says {}",
                desc.digest, desc.size
            )));
        }
        Ok((p, len))
    }

    /// Check the blob `desc` names against its size and digest, reading it
    /// through (never whole into memory).
    pub fn check_described(&self, desc: &Descriptor) -> Result<()> {
        use sha2::Digest as _;
        let (p, _) = self.sized(desc)?;
        let mut h = sha2::Sha256::new();
        crate::digest::read_through(&p, |b| h.update(b))?;
        if Digest::from_sha256(h.finalize().as_slice()) != desc.digest {
            return Err(Error::msg(format!(
                "read blob {}: content does not match its digest",
                p.display()
            )));
        }
        Ok(())
    }

    /// The manifest or index `desc` points at, parsed.
    pub fn node(&self, desc: &Descriptor) -> Result<Node> {
        let fail = |m: String| Error::msg(format!("read {} {}: {m}", desc.media_type, desc.digest));
        let bytes = self.read_described(desc, super::MAX_JSON)?;
        match desc.media_type.as_str() {
            MEDIA_TYPE_INDEX | super::MEDIA_TYPE_DOCKER_LIST => serde_json::from_slice(&bytes)
                .map(Node::Index)
                .map_err(|e| fail(e.to_string())),
            MEDIA_TYPE_MANIFEST | super::MEDIA_TYPE_DOCKER_MANIFEST => {
                serde_json::from_slice(&bytes)
                    .map(|m| Node::Manifest(Box::new(m)))
                    .map_err(|e| fail(e.to_string()))
            }
            other => Err(fail(format!("unsupported media type {other}"))),
        }
    }

    /// Visit `desc` and everything below it, children before the index that
    /// lists them (the order a registry accepts them in), each manifest or
    /// index once however often it is listed (a hostile layout could
    /// otherwise list one index a thousand times at every level).
    /// `artifacts`: also descend into an index's artifact manifests.
    pub fn walk(
        &self,
        desc: &Descriptor,
        artifacts: bool,
        visit: &mut dyn FnMut(&Descriptor, &Node) -> Result<()>,
    ) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        self.walk_at(desc, artifacts, visit, &mut seen, 0)
    }

    fn walk_at(
        &self,
        desc: &Descriptor,
        artifacts: bool,
        visit: &mut dyn FnMut(&Descriptor, &Node) -> Result<()>,
        seen: &mut std::collections::HashSet<Digest>,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::msg(format!(
                "read {} {}: indexes nested too deeply",
                desc.media_type, desc.digest
            )));
        }
        if !seen.insert(desc.digest.clone()) {
            return Ok(());
        }
        let node = self.node(desc)?;
        if let Node::Index(index) = &node {
            for m in &index.manifests {
                if artifacts || m.artifact_type.is_none() {
                    self.walk_at(m, artifacts, visit, seen, depth + 1)?;
                }
            }
        }
        visit(desc, &node)
    }

    /// Every image of the layout, by top descriptor, digests checked.
    pub fn images(&self) -> Result<Vec<(Descriptor, Vec<FoundImage>)>> {
        let mut out = Vec::new();
        for top in self.tops() {
            let reference = top.annotations.get(ANNOTATION_REF_NAME).cloned();
            let mut found = Vec::new();
            self.walk(top, false, &mut |desc, node| {
                if let Node::Manifest(manifest) = node {
                    found.push(self.found(desc, manifest, &reference)?);
                }
                Ok(())
            })?;
            out.push((top.clone(), found));
        }
        Ok(out)
    }

    fn found(
        &self,
        desc: &Descriptor,
        manifest: &Manifest,
        reference: &Option<String>,
    ) -> Result<FoundImage> {
        let config_raw = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfigJson = serde_json::from_slice(&config_raw).map_err(|e| {
            Error::msg(format!(
                "read {} {}: config: {e}",
                desc.media_type, desc.digest
            ))
        })?;
        let platform = desc.platform.clone().unwrap_or_else(|| OciPlatform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: config.variant.clone(),
        });
        Ok(FoundImage {
            reference: reference.clone(),
            platform,
            descriptor: desc.clone(),
            manifest: manifest.clone(),
            config,
            config_raw,
        })
    }

    /// One image: the one for `want`, else the host's, else the only one.
    /// A choice that fails names the platforms the layout has; the caller
    /// puts its own verb and the layout's path in front.
    pub fn choose(&self, want: Option<&Platform>) -> Result<FoundImage> {
        let all: Vec<FoundImage> = self
            .images()?
            .into_iter()
            .flat_map(|(_, imgs)| imgs)
            .collect();
        choose_among(&all, want)
    }

    /// A reader of a layer's uncompressed tar bytes (the blob checked
    /// against its digest first).
    pub fn layer_reader(&self, l: &Descriptor) -> Result<Box<dyn Read>> {
        let bytes = self.read_described(l, u64::MAX)?;
        match l.media_type.as_str() {
            crate::layer::MEDIA_TYPE_GZIP | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                Ok(Box::new(GzDecoder::new(std::io::Cursor::new(bytes))))
            }
            crate::layer::MEDIA_TYPE_ZSTD => Ok(Box::new(
                zstd::stream::read::Decoder::new(std::io::Cursor::new(bytes))
                    .map_err(|e| Error::msg(format!("read layer {}: {e}", l.digest)))?,
            )),
            crate::layer::MEDIA_TYPE_TAR | "application/vnd.docker.image.rootfs.diff.tar" => {
                Ok(Box::new(std::io::Cursor::new(bytes)))
            }
            other => Err(Error::msg(format!(
                "read layer {}: unsupported media type {other}",
                l.digest
            ))),
        }
    }

    /// Apply one layer to `tree` (whiteouts honoured, every path kept
    /// inside the tree's root).
    pub fn unpack(&self, l: &Descriptor, tree: &mut super::Tree) -> Result<()> {
        let reader = self.layer_reader(l)?;
        tree.apply(reader, &format!("layer {}", l.digest))
    }

    /// Apply every layer of `image`, in order, into `rootfs` (an empty
    /// directory).
    pub fn unpack_image(&self, image: &FoundImage, rootfs: &Path) -> Result<super::Tree> {
        let mut tree = super::Tree::new(rootfs)?;
        for l in &image.manifest.layers {
            self.unpack(l, &mut tree)?;
        }
        Ok(tree)
    }
}

/// [`Layout::choose`] over images already read.
pub fn choose_among(all: &[FoundImage], want: Option<&Platform>) -> Result<FoundImage> {
    choose_platform(
        all,
        |i| i.platform.display().parse::<Platform>().ok(),
        |i| i.platform.display(),
        want,
        "it has",
    )
    .cloned()
}

/// The rule every command that picks one image follows: the platform
/// asked for, else the host's, else the only one. `has` introduces the
/// list of what there is in the error ("it has", "the recipe builds").
pub fn choose_platform<'a, T>(
    all: &'a [T],
    platform_of: impl Fn(&T) -> Option<Platform>,
    name_of: impl Fn(&T) -> String,
    want: Option<&Platform>,
    has: &str,
) -> Result<&'a T> {
    let list = || all.iter().map(&name_of).collect::<Vec<_>>().join(", ");
    if let Some(p) = want {
        return all
            .iter()
            .find(|i| platform_of(i).as_ref() == Some(p))
            .ok_or_else(|| Error::msg(format!("no image for {p} ({has} {})", list())));
    }
    let host = Platform::host();
    if let Some(i) = all.iter().find(|i| platform_of(i).as_ref() == Some(&host)) {
        return Ok(i);
    }
    match all {
        [only] => Ok(only),
        [] => Err(Error::msg("the layout holds no image")),
        _ => Err(Error::msg(format!(
            "no image for the host ({host}); choose one with --platform ({})",
            list()
        ))),
    }
}
