//! Stage 0, base: the image a recipe builds on (`[base]`, `--base`).
//!
//! [`fetch`] brings a source's blobs to one place once per build — a
//! registry pull into the cache's content-addressed store, a layout as it
//! is, an archive unpacked, a rootfs tarball made into a layer — and finds
//! each platform's manifest. [`Base::open`] then reads one platform's
//! manifest and config and applies its layers (whiteouts honoured, nothing
//! outside the root) into a [`Tree`]: the filesystem the closure is
//! resolved against, the files a squashed layer is made of.

mod archive;
mod rootfs;
pub mod source;
mod unpacked;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

pub use source::Source;

use crate::digest::Digest;
use crate::error::{Error, Result, ResultExt};
use crate::layer::compress::Compression;
use crate::oci::apply::{EntryKind, Tree};
use crate::oci::read::Node;
use crate::oci::{self, Descriptor, ImageConfigJson, Layout};
use crate::plan::{Item, ItemKind, Lower, LowerKind};
use crate::platform::Platform;
use crate::recipe::{BaseSpec, ImagePath};

pub use crate::oci::MAX_JSON;

/// How to fetch a base.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The cache directory: pulled blobs and made rootfs layers are kept
    /// under it (`blobs/sha256`), so a second build fetches nothing.
    pub cache: Option<PathBuf>,
    /// Registry settings (insecure hosts, progress).
    pub registry: crate::registry::PushOptions,
    /// How a `rootfs:` tarball's layer is compressed.
    pub compression: Compression,
    pub jobs: usize,
}

/// A source's blobs in one directory, and the manifest for each platform.
pub struct Fetched {
    pub source: Source,
    /// `org.opencontainers.image.base.name`: the reference without its
    /// digest, or the source as written.
    pub name: String,
    /// The top's digest (a registry's index or manifest; a layout's top).
    pub top: Digest,
    /// A directory with `blobs/sha256/<hex>`.
    root: PathBuf,
    manifests: BTreeMap<Platform, Descriptor>,
    /// The cache directory, where the base's applied tree is kept
    /// (`unpacked`), whatever the source.
    cache: Option<PathBuf>,
    /// An unpacked archive, removed when the build ends.
    _tmp: Option<tempfile::TempDir>,
}

impl Fetched {
    /// Are the blobs in the cache (so using them marks them used)?
    fn in_cache(&self) -> bool {
        self._tmp.is_none() && matches!(self.source, Source::Registry(_) | Source::Rootfs { .. })
    }
}

impl Fetched {
    /// The platforms fetched, as names.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests.keys().map(|p| p.to_string()).collect()
    }

    /// Was `platform`'s manifest fetched?
    pub fn has(&self, platform: &Platform) -> bool {
        self.manifests.contains_key(platform)
    }
}

/// Write what `fetched` holds as an OCI image layout at `output` (atomically,
/// as a build's): the original top when every platform of it was fetched
/// (`all`), else one manifest or a new index over those fetched. The top is
/// tagged `tag`.
pub fn write_layout(fetched: &Fetched, output: &Path, tag: &str, all: bool) -> Result<Descriptor> {
    use crate::oci::{Index, LayoutWriter, Staging};
    let staging = Staging::new(output)?;
    let mut writer = LayoutWriter::new(&staging.dir)?;
    let src = Layout::from_blobs(&fetched.root, Descriptor::of("", fetched.top.clone(), 0));
    let mut seen = std::collections::BTreeSet::new();
    // Docker schema2 manifests are written as their OCI equivalents (the
    // same config and layer blobs), so every tool reading the layout can;
    // the image's digests are then new.
    let mut manifests = Vec::new();
    let mut converted = false;
    for d in fetched.manifests.values() {
        let Node::Manifest(m) = src.node(d)? else {
            return Err(Error::msg(format!("read manifest {}: an index", d.digest)));
        };
        for b in std::iter::once(&m.config)
            .chain(&m.layers)
            .map(|b| &b.digest)
        {
            if seen.insert(b.clone()) {
                writer.import_blob(&src.blob_path(b), b)?;
            }
        }
        if d.media_type == oci::MEDIA_TYPE_DOCKER_MANIFEST {
            let mut m = *m;
            m.media_type = Some(oci::MEDIA_TYPE_MANIFEST.into());
            m.config.media_type = oci::MEDIA_TYPE_CONFIG.into();
            for l in &mut m.layers {
                l.media_type = oci_layer_type(&l.media_type)
                    .ok_or_else(|| {
                        Error::msg(format!(
                            "convert manifest {}: layer {} has media type {}, not an image layer",
                            d.digest, l.digest, l.media_type
                        ))
                    })?
                    .to_string();
            }
            let new = writer.put_json(oci::MEDIA_TYPE_MANIFEST, &m)?;
            manifests.push(Descriptor {
                platform: d.platform.clone(),
                ..new
            });
            converted = true;
        } else {
            if seen.insert(d.digest.clone()) {
                writer.import_blob(&src.blob_path(&d.digest), &d.digest)?;
            }
            manifests.push(d.clone());
        }
    }
    let top_path = src.blob_path(&fetched.top);
    // The original top, when it is an index of its own (a rootfs tarball's
    // digest names no blob).
    let original = all
        && !converted
        && top_path.is_file()
        && !fetched.manifests.values().any(|d| d.digest == fetched.top)
        && lists_only(&top_path, &manifests);
    let untagged = if original {
        let bytes = std::fs::read(&top_path).map_err(|e| Error::io("read", &top_path, e))?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| oci::MEDIA_TYPE_INDEX.to_string());
        writer.import_blob(&top_path, &fetched.top)?;
        Descriptor::of(&media_type, fetched.top.clone(), bytes.len() as u64)
    } else {
        match manifests.as_slice() {
            [one] => one.clone(),
            many => writer.put_json(
                oci::MEDIA_TYPE_INDEX,
                &Index {
                    schema_version: 2,
                    media_type: Some(oci::MEDIA_TYPE_INDEX.into()),
                    manifests: many.to_vec(),
                    annotations: BTreeMap::new(),
                },
            )?,
        }
    };
    let top = Descriptor {
        annotations: BTreeMap::from([(oci::ANNOTATION_REF_NAME.to_string(), tag.to_string())]),
        ..untagged
    };
    writer.finish(top.clone(), Vec::new())?;
    staging.commit()?;
    Ok(top)
}

/// Does the index at `path` list only manifests in `have` (so a layout
/// with it as its top has every blob it names)?
fn lists_only(path: &Path, have: &[Descriptor]) -> bool {
    let Some(index) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<oci::Index>(&b).ok())
    else {
        return false;
    };
    index
        .manifests
        .iter()
        .all(|m| have.iter().any(|h| h.digest == m.digest))
}

/// Fetch `source` for `platforms` (none: every platform it has); every
/// platform named must be there.
pub fn fetch(source: &Source, platforms: &[Platform], opts: &FetchOptions) -> Result<Fetched> {
    let what = format!("fetch base {source}");
    let mut fetched = fetch_any(source, platforms, opts).context_with(|| what.clone())?;
    fetched.cache = opts.cache.clone();
    Ok(fetched)
}

fn fetch_any(source: &Source, platforms: &[Platform], opts: &FetchOptions) -> Result<Fetched> {
    let store = |tmp: &mut Option<tempfile::TempDir>| -> Result<PathBuf> {
        match &opts.cache {
            Some(c) => Ok(c.clone()),
            None => {
                let t = temp_dir()?;
                let p = t.path().to_path_buf();
                *tmp = Some(t);
                Ok(p)
            }
        }
    };
    let mut tmp = None;
    match source {
        Source::Registry(r) => {
            let root = store(&mut tmp)?;
            let top = crate::registry::pull::pull(r, platforms, &root, &opts.registry)?;
            let mut name = r.clone();
            name.digest = None;
            let layout = Layout::from_blobs(&root, top.clone());
            let manifests = select(&layout, &top, platforms)?;
            Ok(Fetched {
                source: source.clone(),
                name: name.to_string(),
                top: top.digest,
                root,
                manifests,
                cache: None,
                _tmp: tmp,
            })
        }
        Source::Oci { dir, tag } => {
            let layout = Layout::open(dir)?;
            from_layout(source, layout, tag.as_deref(), platforms, None)
        }
        Source::OciArchive { file, tag } => {
            let t = temp_dir()?;
            archive::unpack_oci_archive(file, t.path())?;
            let layout = Layout::open(t.path())?;
            from_layout(source, layout, tag.as_deref(), platforms, Some(t))
        }
        Source::DockerArchive { file } => {
            let t = temp_dir()?;
            let top = archive::unpack_docker_archive(file, t.path())?;
            let layout = Layout::from_blobs(t.path(), top.clone());
            let manifests = select(&layout, &top, platforms)?;
            Ok(Fetched {
                source: source.clone(),
                name: source.to_string(),
                top: top.digest,
                root: t.path().to_path_buf(),
                manifests,
                cache: None,
                _tmp: Some(t),
            })
        }
        Source::Rootfs { file } => {
            let root = store(&mut tmp)?;
            let made = rootfs::layer(file, &root, opts.compression, opts.jobs)?;
            let mut manifests = BTreeMap::new();
            for p in platforms {
                manifests.insert(p.clone(), rootfs::image(&made, file, p, &root)?);
            }
            Ok(Fetched {
                source: source.clone(),
                name: source.to_string(),
                top: made.tarball,
                root,
                manifests,
                cache: None,
                _tmp: tmp,
            })
        }
    }
}

fn temp_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("bareroot-base-")
        .tempdir()
        .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))
}

/// A layout's image: the top tagged `tag`, else the only one.
fn from_layout(
    source: &Source,
    layout: Layout,
    tag: Option<&str>,
    platforms: &[Platform],
    tmp: Option<tempfile::TempDir>,
) -> Result<Fetched> {
    let tops: Vec<&Descriptor> = layout.tops().collect();
    let tagged = |d: &&&Descriptor| {
        d.annotations
            .get(oci::ANNOTATION_REF_NAME)
            .map(String::as_str)
            == tag
    };
    let top = match (tag, tops.as_slice()) {
        (None, [one]) => (*one).clone(),
        (None, []) => return Err(Error::msg("the layout lists no image")),
        (None, _) => {
            return Err(Error::msg(
                "the layout lists several images; name one as oci:DIR:TAG",
            ))
        }
        (Some(t), _) => tops
            .iter()
            .find(tagged)
            .map(|d| (*d).clone())
            .ok_or_else(|| Error::msg(format!("the layout has no image tagged {t:?}")))?,
    };
    let manifests = select(&layout, &top, platforms)?;
    Ok(Fetched {
        source: source.clone(),
        name: source.to_string(),
        top: top.digest.clone(),
        root: layout.root().to_path_buf(),
        manifests,
        cache: None,
        _tmp: tmp,
    })
}

/// The manifest of each platform under `top`: an index's entry for it
/// (its descriptor's platform, else its config's), or a single manifest
/// whose config says that platform.
fn select(
    layout: &Layout,
    top: &Descriptor,
    platforms: &[Platform],
) -> Result<BTreeMap<Platform, Descriptor>> {
    let mut found: Vec<(Option<Platform>, Descriptor)> = Vec::new();
    layout.walk(top, false, &mut |d, node| {
        if let Node::Manifest(m) = node {
            let platform = match &d.platform {
                Some(p) => p.display().parse().ok(),
                None => {
                    let raw = layout.read_described(&m.config, MAX_JSON)?;
                    let c: ImageConfigJson = serde_json::from_slice(&raw)
                        .map_err(|e| Error::msg(format!("read config {}: {e}", m.config.digest)))?;
                    let p = oci::OciPlatform {
                        architecture: c.architecture,
                        os: c.os,
                        variant: c.variant,
                    };
                    p.display().parse().ok()
                }
            };
            found.push((platform, d.clone()));
        }
        Ok(())
    })?;
    let mut out = BTreeMap::new();
    if platforms.is_empty() {
        for (p, d) in found {
            if let Some(p) = p {
                out.entry(p).or_insert(d);
            }
        }
        return Ok(out);
    }
    for p in platforms {
        let Some((_, d)) = found.iter().find(|(fp, _)| fp.as_ref() == Some(p)) else {
            let has: Vec<String> = found
                .iter()
                .filter_map(|(p, _)| p.as_ref().map(|p| p.to_string()))
                .collect();
            return Err(Error::msg(format!(
                "no image for {p} (the base has {})",
                if has.is_empty() {
                    "none".to_string()
                } else {
                    has.join(", ")
                }
            )));
        };
        out.insert(p.clone(), d.clone());
    }
    Ok(out)
}

/// One layer of a base, as the image will list it.
#[derive(Clone, Debug)]
pub struct BaseLayer {
    /// With the OCI media type of the same bytes.
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// The compressed bytes.
    pub blob: PathBuf,
}

/// One platform's base: its layers, config, and applied filesystem.
pub struct Base {
    /// `org.opencontainers.image.base.name`.
    pub name: String,
    /// `org.opencontainers.image.base.digest`: the platform's manifest.
    pub digest: Digest,
    pub layers: Vec<BaseLayer>,
    pub config: ImageConfigJson,
    pub squash: bool,
    pub inherit_config: bool,
    /// The `remove` paths, as the base has them (parents resolved through
    /// its symlinks), sorted.
    pub removed: Vec<ImagePath>,
    fs: Arc<BaseFs>,
    /// The tree's directory when it is this build's own (not the cache's).
    _tmp: Option<tempfile::TempDir>,
}

impl Base {
    /// Read `platform`'s manifest and config from `fetched` and apply its
    /// layers, then `spec.remove`.
    pub fn open(fetched: &Fetched, platform: &Platform, spec: &BaseSpec) -> Result<Base> {
        let desc = fetched.manifests.get(platform).ok_or_else(|| {
            Error::msg(format!(
                "open base {} for {platform}: no image for that platform",
                fetched.name
            ))
        })?;
        let ctx = || format!("open base {} for {platform}", fetched.name);
        let layout = Layout::from_blobs(&fetched.root, desc.clone());
        let manifest = match layout.node(desc).context_with(ctx)? {
            Node::Manifest(m) => *m,
            Node::Index(_) => return Err(Error::msg(format!("{}: not an image manifest", ctx()))),
        };
        let raw = layout
            .read_described(&manifest.config, MAX_JSON)
            .context_with(ctx)?;
        let config: ImageConfigJson = serde_json::from_slice(&raw)
            .map_err(|e| Error::msg(format!("{}: read config: {e}", ctx())))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::msg(format!(
                "{}: the config lists {} diff_ids for {} layers",
                ctx(),
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let media_types = manifest
            .layers
            .iter()
            .map(|l| {
                oci_layer_type(&l.media_type).ok_or_else(|| {
                    Error::msg(format!(
                        "{}: layer {} has media type {}, not an image layer",
                        ctx(),
                        l.digest,
                        l.media_type
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let diff_ids = &config.rootfs.diff_ids;
        let mut unpacked_now = false;
        let unpacked = unpacked::open(fetched.cache.as_deref(), diff_ids, |tree| {
            unpacked_now = true;
            for (l, diff_id) in manifest.layers.iter().zip(diff_ids) {
                let what = format!("layer {} of base {}", l.digest, fetched.name);
                let reader = layout.layer_reader(l)?;
                let mut hashed = HashingReader {
                    inner: reader,
                    hash: Sha256::new(),
                };
                tree.apply(&mut hashed, &what)?;
                std::io::copy(&mut hashed, &mut std::io::sink())
                    .map_err(|e| Error::msg(format!("read {what}: {e}")))?;
                let got = Digest::from_sha256(hashed.hash.finalize().as_slice());
                if got != *diff_id {
                    return Err(Error::msg(format!(
                        "{what} unpacks to {got}, its config says {diff_id}"
                    )));
                }
            }
            Ok(())
        })
        .context_with(ctx)?;
        let (mut tree, tmp) = unpacked.into_parts();
        let mut layers = Vec::new();
        for ((l, diff_id), media_type) in manifest.layers.iter().zip(diff_ids).zip(media_types) {
            let blob = layout.blob_path(&l.digest);
            if fetched.in_cache() {
                // Checked when stored; mark it used, for the cache's trimming.
                let _ = crate::cache::touch(&blob);
            } else if !unpacked_now {
                // The tree came from the cache, but the blob the image will
                // list is the source's own: it must still be what it says.
                layout.check_described(l).context_with(ctx)?;
            }
            layers.push(BaseLayer {
                descriptor: Descriptor {
                    media_type: media_type.to_string(),
                    ..Descriptor::of(media_type, l.digest.clone(), l.size)
                },
                diff_id: diff_id.clone(),
                blob,
            });
        }
        let mut removed = Vec::new();
        for r in &spec.remove {
            let at = resolve_parents(&tree, r);
            // Under a path removed already (the list is sorted): gone too.
            if removed
                .iter()
                .any(|p: &ImagePath| at.as_str().starts_with(&format!("{}/", p.as_str())))
            {
                continue;
            }
            if tree.get(&at).is_none() || !tree.forget(&at).context_with(ctx)? {
                return Err(Error::msg(format!(
                    "{}: remove {r}: the base has no such path",
                    ctx()
                )));
            }
            removed.push(at);
        }
        removed.sort();
        removed.dedup();
        let name = fetched.name.clone();
        let label = format!("{name}@{}", desc.digest);
        Ok(Base {
            name,
            digest: desc.digest.clone(),
            layers,
            config,
            squash: spec.squash,
            inherit_config: spec.config,
            removed,
            fs: Arc::new(BaseFs { tree, label }),
            _tmp: tmp,
        })
    }

    /// The base's filesystem, for the loader and the plan.
    pub fn lower(&self) -> Arc<dyn Lower> {
        self.fs.clone()
    }

    /// The directory the base's files are unpacked in.
    pub fn root(&self) -> &Path {
        self.fs.tree.root()
    }

    /// The base's entries as plan items (for a squashed layer).
    pub fn items(&self) -> BTreeMap<ImagePath, Item> {
        self.fs.items()
    }

    /// Extended attributes of the base's regular files.
    pub fn xattrs(&self) -> BTreeMap<ImagePath, Vec<(String, Vec<u8>)>> {
        self.fs
            .tree
            .entries()
            .iter()
            .filter(|(_, e)| !e.xattrs.is_empty() && matches!(e.kind, EntryKind::File { .. }))
            .map(|(p, e)| (p.clone(), e.xattrs.clone()))
            .collect()
    }
}

impl Drop for Base {
    /// A tree of this build's own goes with its temporary directory: its
    /// files' digests are not worth keeping in the stat cache. (The
    /// cache's stays, and so do they.)
    fn drop(&mut self) {
        if self._tmp.is_some() {
            crate::digest::forget_under(self.fs.tree.root());
        }
    }
}

/// The OCI media type of a layer's bytes (Docker's names map to the same
/// bytes); None for what is not an image layer.
fn oci_layer_type(media_type: &str) -> Option<&'static str> {
    use crate::layer::{MEDIA_TYPE_GZIP, MEDIA_TYPE_TAR, MEDIA_TYPE_ZSTD};
    match media_type {
        MEDIA_TYPE_GZIP | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Some(MEDIA_TYPE_GZIP)
        }
        MEDIA_TYPE_ZSTD => Some(MEDIA_TYPE_ZSTD),
        MEDIA_TYPE_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Some(MEDIA_TYPE_TAR),
        _ => None,
    }
}

/// `path` with its parents resolved through the tree's symlinks (the last
/// component kept).
fn resolve_parents(tree: &Tree, path: &ImagePath) -> ImagePath {
    let Some(parent) = path.parent() else {
        return path.clone();
    };
    let name = path.rel().rsplit('/').next().unwrap_or("");
    match tree.resolve(&parent) {
        Some(p) => ImagePath::new(&format!("{}/{name}", p.as_str().trim_end_matches('/')))
            .unwrap_or_else(|_| path.clone()),
        None => path.clone(),
    }
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A base's applied tree as the plan sees it.
struct BaseFs {
    tree: Tree,
    /// "NAME@DIGEST", for messages.
    label: String,
}

impl std::fmt::Debug for BaseFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BaseFs({})", self.label)
    }
}

impl Lower for BaseFs {
    fn lower(&self, path: &ImagePath) -> Option<LowerKind> {
        self.tree.get(path).map(|e| match &e.kind {
            EntryKind::Dir => LowerKind::Dir {
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
            },
            EntryKind::Symlink { target } => LowerKind::Symlink(target.clone()),
            EntryKind::File { .. } | EntryKind::HardLink { .. } => LowerKind::File,
            EntryKind::Special { .. } => LowerKind::Other,
        })
    }

    fn read(&self, path: &ImagePath) -> Option<Vec<u8>> {
        let real = self.tree.resolve(path)?;
        match self.tree.get(&real)?.kind {
            EntryKind::File { .. } | EntryKind::HardLink { .. } => {
                let mut f = std::fs::File::open(self.tree.host_path(&real)).ok()?;
                let mut buf = Vec::new();
                (&mut f).take(16 << 20).read_to_end(&mut buf).ok()?;
                Some(buf)
            }
            _ => None,
        }
    }

    fn root(&self) -> &Path {
        self.tree.root()
    }

    fn name(&self) -> &str {
        &self.label
    }

    fn items(&self) -> BTreeMap<ImagePath, Item> {
        use std::os::unix::fs::MetadataExt;
        let why = format!("base {}", self.label);
        let mut out = BTreeMap::new();
        // Hard links of one file: the first in path order is the file, the
        // rest link to it (a tar's link must follow its target).
        let mut first_of: BTreeMap<(u64, u64), ImagePath> = BTreeMap::new();
        for (path, e) in self.tree.entries() {
            let kind = match &e.kind {
                EntryKind::Dir => ItemKind::Dir,
                EntryKind::Symlink { target } => ItemKind::Symlink {
                    target: target.clone(),
                },
                EntryKind::Special { kind, major, minor } => ItemKind::Special {
                    kind: *kind,
                    major: *major,
                    minor: *minor,
                },
                EntryKind::File { .. } | EntryKind::HardLink { .. } => {
                    let src = self.tree.host_path(path);
                    let Ok(m) = std::fs::symlink_metadata(&src) else {
                        continue;
                    };
                    let id = (m.dev(), m.ino());
                    match first_of.get(&id) {
                        Some(target) if m.nlink() > 1 => ItemKind::HardLink {
                            target: target.clone(),
                        },
                        _ => {
                            if m.nlink() > 1 {
                                first_of.insert(id, path.clone());
                            }
                            ItemKind::File { src, size: m.len() }
                        }
                    }
                }
            };
            let item = Item::new(kind, e.mode & 0o7777, why.clone())
                .with_owner(e.uid, e.gid)
                .explicit();
            out.insert(path.clone(), item);
        }
        out
    }
}

/// Put the base's entries under the plan's (squash): the plan's own win,
/// a base directory the plan replaces with something else loses its
/// children, and a hard link whose file the plan replaced becomes a file.
pub fn squash_into(plan: &mut crate::plan::Plan, base: &Base) {
    let mut items = base.items();
    let replaced: Vec<ImagePath> = plan
        .entries
        .iter()
        .filter(|(p, i)| {
            !matches!(i.kind, ItemKind::Dir)
                && matches!(items.get(*p).map(|b| &b.kind), Some(ItemKind::Dir))
        })
        .map(|(p, _)| p.clone())
        .collect();
    for r in replaced {
        let prefix = format!("{}/", r.as_str());
        items.retain(|p, _| !p.as_str().starts_with(&prefix));
    }
    let mut xattrs = base.xattrs();
    // The base's files as put in the plan: a hard link to anything else
    // (a file of ours now, or one left out under a replaced directory)
    // becomes a file with its own bytes.
    let mut files: std::collections::BTreeSet<ImagePath> = Default::default();
    for (path, mut item) in items {
        if plan.entries.contains_key(&path) {
            xattrs.remove(&path);
            continue;
        }
        match &item.kind {
            ItemKind::HardLink { target } if !files.contains(target) => {
                let src = base.fs.tree.host_path(&path);
                let size = std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0);
                item.kind = ItemKind::File { src, size };
            }
            ItemKind::File { .. } => {
                files.insert(path.clone());
            }
            _ => {}
        }
        plan.entries.insert(path, item);
    }
    for (path, x) in xattrs {
        plan.xattrs.entry(path).or_insert(x);
    }
}
