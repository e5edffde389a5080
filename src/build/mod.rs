//! The build: a validated recipe → one image per platform, stage by stage
//! (`plan` → `layer` → `image` → `sbom`, one file each) → the top
//! descriptor (the manifest, or an index over several) → an OCI image
//! layout, written beside the output and moved into place only when
//! complete (`oci::layout`).

mod image;
mod layer;
pub mod plan;
mod sbom;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::base::{Base, FetchOptions, Fetched, Source};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::error::{Error, Result, ResultExt};
use crate::layer::compress::Compression;
use crate::layer::LayerInfo;
use crate::oci::{self, Descriptor, Index, LayoutWriter, Staging};
use crate::plan::Plan;
use crate::platform::Platform;
use crate::recipe::{BaseImage, BaseSpec, Recipe};
use crate::toolchain::Toolchains;

/// How to build, beyond what the recipe says.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Layout directory; default `out/<name>`.
    pub output: Option<PathBuf>,
    /// `--epoch`: wins over everything.
    pub epoch: Option<u64>,
    /// The raw `SOURCE_DATE_EPOCH` value, if set.
    pub source_date_epoch: Option<String>,
    /// `--sysroot PLATFORM=DIR` overrides (over the recipe's `[sysroot]`).
    pub sysroots: BTreeMap<Platform, PathBuf>,
    /// The embedded toolchains plus `--toolchains` and the recipe's.
    pub toolchains: Toolchains,
    /// Store each platform's SBOM in the layout as an OCI artifact whose
    /// subject is the image manifest.
    pub attach_sbom: bool,
    /// Layer compression.
    pub compression: Compression,
    /// Threads for compression (0: one per CPU). Never changes the bytes.
    pub jobs: usize,
    /// The layer cache, if any.
    pub cache: Option<Cache>,
    /// Rebuild every layer even when the cache has it (the result is
    /// stored again).
    pub no_cache: bool,
    /// Where build progress goes (off by default).
    pub progress: crate::progress::Progress,
    /// `--base SOURCE`: over the recipe's `[base] image` (relative paths
    /// from the working directory).
    pub base: Option<String>,
    /// How to reach registries (a base pulled from one).
    pub registry: crate::registry::Options,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            output: None,
            epoch: None,
            source_date_epoch: None,
            sysroots: BTreeMap::new(),
            toolchains: Toolchains::default(),
            attach_sbom: false,
            compression: Compression::Gzip {
                level: Compression::DEFAULT_GZIP_LEVEL,
            },
            jobs: 0,
            cache: None,
            no_cache: false,
            progress: crate::progress::Progress::off(),
            base: None,
            registry: Default::default(),
        }
    }
}

impl BuildOptions {
    /// The number of threads to use.
    pub fn jobs(&self) -> usize {
        if self.jobs > 0 {
            self.jobs
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// One platform's finished image.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub platform: Platform,
    pub manifest: Descriptor,
    pub layer: LayerInfo,
    pub files: usize,
    pub bytes: u64,
    /// Artifact manifests about this image (an attached SBOM).
    pub referrers: Vec<Descriptor>,
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildResult {
    pub output: PathBuf,
    pub epoch: u64,
    pub top: Descriptor,
    pub images: Vec<BuiltImage>,
    /// The bases built on, as fetched.
    pub bases: Vec<BaseUsed>,
    /// What the user should know about the build (stderr).
    pub notes: Vec<String>,
}

/// A base a build used: the source as written, and what it resolved to.
#[derive(Clone, Debug)]
pub struct BaseUsed {
    pub source: String,
    pub name: String,
    pub digest: Digest,
    /// Named by content (a digest, or local bytes the build hashes).
    pub pinned: bool,
}

/// `--epoch` > `SOURCE_DATE_EPOCH` > the recipe's `epoch` > 0.
pub fn resolve_epoch(flag: Option<u64>, env: Option<&str>, recipe: Option<u64>) -> Result<u64> {
    let epoch = if let Some(e) = flag {
        e
    } else if let Some(raw) = env {
        raw.parse::<u64>()
            .ok()
            .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                Error::msg(format!(
                    "read SOURCE_DATE_EPOCH: {raw:?} is not a non-negative integer number of seconds"
                ))
            })?
    } else {
        recipe.unwrap_or(0)
    };
    if epoch > crate::layer::MAX_EPOCH {
        return Err(Error::msg(format!(
            "set epoch: {epoch} is later than a tar header can record ({})",
            crate::layer::MAX_EPOCH
        )));
    }
    Ok(epoch)
}

/// Manifest annotation: the bareroot version that built the image.
pub const ANNOTATION_VERSION: &str = "dev.bareroot.version";
/// Manifest annotation: the layer's compression and its implementation
/// ([`Compression::describe`]).
pub const ANNOTATION_COMPRESSION: &str = "dev.bareroot.compression";
/// `vcs = true`: the repository and the commit the recipe was built from.
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";

/// Everything worked out once before any platform is built: the epoch,
/// the output, the toolchains (the recipe's own included) and the stat
/// cache's file.
struct Context<'a> {
    recipe: &'a Recipe,
    opts: &'a BuildOptions,
    epoch: u64,
    output: PathBuf,
    toolchains: Toolchains,
    /// The stat cache of input digests; --no-cache builds without it.
    stat_cache: Option<PathBuf>,
    /// The base, fetched once for every platform that uses each source.
    base: Option<(BaseSpec, Vec<Fetched>)>,
    /// `vcs = true`: the annotations of the checkout holding the recipe.
    vcs: BTreeMap<String, String>,
    /// What the user should know (a dirty checkout).
    notes: Vec<String>,
}

impl<'a> Context<'a> {
    fn new(recipe: &'a Recipe, opts: &'a BuildOptions) -> Result<Context<'a>> {
        let stat_cache = opts
            .cache
            .as_ref()
            .filter(|_| !opts.no_cache)
            .map(|c| crate::digest::stat_cache_file(c.root(), &recipe.path));
        // Loaded first: a `rootfs:` base is named by its tarball's digest.
        if let Some(file) = &stat_cache {
            crate::digest::load(file);
        }
        Context {
            recipe,
            opts,
            epoch: resolve_epoch(opts.epoch, opts.source_date_epoch.as_deref(), recipe.epoch)?,
            output: opts
                .output
                .clone()
                .unwrap_or_else(|| Path::new("out").join(&recipe.name)),
            toolchains: toolchains_for(recipe, opts)?,
            stat_cache,
            base: fetch_bases(recipe, opts)?,
            vcs: BTreeMap::new(),
            notes: Vec::new(),
        }
        .with_vcs()
    }

    /// Read the checkout holding the recipe, if `vcs = true`.
    fn with_vcs(mut self) -> Result<Context<'a>> {
        if !self.recipe.vcs {
            return Ok(self);
        }
        let c = crate::vcs::checkout(&self.recipe.base)?;
        self.vcs
            .insert(ANNOTATION_REVISION.to_string(), c.revision.clone());
        if let Some(s) = &c.source {
            self.vcs.insert(ANNOTATION_SOURCE.to_string(), s.clone());
        }
        if c.dirty {
            self.notes.push(format!(
                "the git checkout holding {} has uncommitted changes: the image may hold what \
                 revision {} does not",
                self.recipe.path.display(),
                &c.revision[..12]
            ));
        }
        Ok(self)
    }

    /// The platform's base, opened (its layers applied).
    fn base(&self, platform: &Platform) -> Result<Option<Base>> {
        let Some((spec, fetched)) = &self.base else {
            return Ok(None);
        };
        let f = fetched
            .iter()
            .find(|f| f.has(platform))
            .ok_or_else(|| Error::msg(format!("open base for {platform}: none fetched")))?;
        Base::open(f, platform, spec).map(Some)
    }
}

/// The base `platform`'s image is built on, fetched and opened (for
/// commands that plan without building: `why`).
pub fn open_base(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
) -> Result<Option<Base>> {
    let Some((spec, fetched)) = fetch_bases(recipe, opts)? else {
        return Ok(None);
    };
    match fetched.iter().find(|f| f.has(platform)) {
        Some(f) => Base::open(f, platform, &spec).map(Some),
        None => Ok(None),
    }
}

/// The recipe's `[base]` (its image replaced by `--base`), each source
/// parsed and fetched for the platforms that use it.
fn fetch_bases(recipe: &Recipe, opts: &BuildOptions) -> Result<Option<(BaseSpec, Vec<Fetched>)>> {
    let (spec, relative_to) = match (&opts.base, &recipe.base_image) {
        (None, None) => return Ok(None),
        (None, Some(spec)) => (spec.clone(), recipe.base.clone()),
        (Some(source), spec) => {
            let mut spec = spec.clone().unwrap_or(BaseSpec {
                image: BaseImage::One(String::new()),
                squash: false,
                config: true,
                libraries: crate::recipe::Libraries::Base,
                remove: Vec::new(),
            });
            spec.image = BaseImage::One(source.clone());
            (spec, PathBuf::from("."))
        }
    };
    let mut by_source: BTreeMap<&str, Vec<Platform>> = BTreeMap::new();
    for p in &recipe.platforms {
        let s = spec.image.for_platform(p).ok_or_else(|| {
            Error::msg(format!(
                "build image {} for {p}: [base] names no image for it",
                recipe.name
            ))
        })?;
        by_source.entry(s).or_default().push(p.clone());
    }
    let fetch_opts = FetchOptions {
        cache: opts.cache.as_ref().map(|c| c.root().to_path_buf()),
        registry: opts.registry.clone(),
        compression: opts.compression,
        jobs: opts.jobs(),
    };
    let mut fetched = Vec::new();
    for (s, platforms) in by_source {
        let source = Source::parse(s, &relative_to)?;
        opts.progress.stage(format!("fetching base {source}"));
        let mut f = crate::base::fetch(&source, &platforms, &fetch_opts)?;
        // A local source is named as written, not as found from the
        // working directory: the annotation must not depend on where the
        // build ran.
        if !matches!(source, Source::Registry(_)) {
            f.name = s.to_string();
        }
        fetched.push(f);
    }
    Ok(Some((spec, fetched)))
}

/// Build the recipe into an OCI image layout: the context, then each
/// platform's image (plan → layer → image → SBOM), then the top descriptor
/// and `index.json`, then the layout swapped into place.
pub fn build(recipe: &Recipe, opts: &BuildOptions) -> Result<BuildResult> {
    let t0 = std::time::Instant::now();
    trace("build started", t0);
    let ctx = Context::new(recipe, opts)?;
    trace("stat cache loaded, bases fetched", t0);
    let staging = Staging::new(&ctx.output)?;
    let mut layout = LayoutWriter::new(&staging.dir)?;
    let mut images = Vec::new();
    for platform in &recipe.platforms {
        let image = build_platform(&ctx, platform, &mut layout)
            .context_with(|| format!("build image {} for {platform}", recipe.name))?;
        images.push(image);
    }
    let top = top_descriptor(recipe, ctx.epoch, &ctx.vcs, &images, &mut layout)?;
    let referrers = images.iter().flat_map(|i| i.referrers.clone()).collect();
    layout.finish(top.clone(), referrers)?;
    trace("layout finished", t0);
    opts.progress.finish();
    if let Some(file) = &ctx.stat_cache {
        crate::digest::save(file);
    }
    trace("stat cache saved", t0);
    staging.commit()?;
    trace("committed", t0);
    let bases = ctx
        .base
        .iter()
        .flat_map(|(_, f)| f)
        .map(|f| BaseUsed {
            source: f.source.to_string(),
            name: f.name.clone(),
            digest: f.top.clone(),
            pinned: f.source.pinned(),
        })
        .collect();
    Ok(BuildResult {
        output: ctx.output,
        epoch: ctx.epoch,
        top,
        images,
        bases,
        notes: ctx.notes,
    })
}

/// What `index.json` points at, tagged: the one manifest, or an index over
/// every platform's.
fn top_descriptor(
    recipe: &Recipe,
    epoch: u64,
    vcs: &BTreeMap<String, String>,
    images: &[BuiltImage],
    layout: &mut LayoutWriter,
) -> Result<Descriptor> {
    // index.json names the image by its tag and by its full reference.
    let ref_name = BTreeMap::from([
        (oci::ANNOTATION_REF_NAME.to_string(), recipe.tag.clone()),
        (
            oci::ANNOTATION_CONTAINERD_NAME.to_string(),
            crate::recipe::full_reference(&recipe.name, &recipe.tag),
        ),
    ]);
    let untagged = match images {
        [only] => only.manifest.clone(),
        _ => {
            let mut annotations = BTreeMap::from([(
                oci::ANNOTATION_CREATED.to_string(),
                crate::timefmt::rfc3339(epoch),
            )]);
            annotations.extend(vcs.clone());
            annotations.extend(recipe.index_annotations.clone());
            let index = Index {
                schema_version: 2,
                media_type: Some(oci::MEDIA_TYPE_INDEX.into()),
                manifests: images.iter().map(|i| i.manifest.clone()).collect(),
                annotations,
            };
            layout.put_json(oci::MEDIA_TYPE_INDEX, &index)?
        }
    };
    Ok(Descriptor {
        annotations: ref_name,
        ..untagged
    })
}

/// Resolve one platform's plan, package metadata included.
pub fn plan_platform(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
) -> Result<Plan> {
    plan::plan(recipe, platform, opts, toolchains, None).map(|p| p.plan)
}

/// The embedded and `--toolchains` toolchains plus the recipe's own.
pub fn toolchains_for(recipe: &Recipe, opts: &BuildOptions) -> Result<Toolchains> {
    let mut t = opts.toolchains.clone();
    for p in &recipe.toolchains {
        t.add_path(p)
            .context_with(|| format!("load toolchains named by {}", recipe.path.display()))?;
    }
    Ok(t)
}

/// One platform's image, stage by stage: plan → layer → image (config and
/// manifest) → SBOM.
fn build_platform(
    ctx: &Context,
    platform: &Platform,
    layout: &mut LayoutWriter,
) -> Result<BuiltImage> {
    let (recipe, opts, epoch) = (ctx.recipe, ctx.opts, ctx.epoch);
    opts.progress
        .stage(format!("{platform}: finding closures and package metadata"));
    let base = ctx.base(platform)?;
    let planned = plan::plan(recipe, platform, opts, &ctx.toolchains, base.as_ref())?;
    let (files, bytes) = planned.plan.file_stats();
    let mut layer = layer::layer(&planned, platform, epoch, opts, layout)?;
    let image = image::image(
        recipe,
        platform,
        epoch,
        opts.compression,
        &layer.info,
        files,
        base.as_ref(),
        &ctx.vcs,
        layout,
    )?;
    let t0 = std::time::Instant::now();
    let sbom = sbom::sbom(
        recipe, platform, epoch, opts, &planned, &layer, &image, layout,
    )?;
    trace("sbom made", t0);
    layer.commit(opts, layout)?;
    trace("layer committed", t0);
    let attached = sbom.store(opts, &layer, epoch, &image, layout)?;
    trace("sbom stored", t0);
    Ok(BuiltImage {
        platform: platform.clone(),
        manifest: image.descriptor,
        layer: layer.info,
        files,
        bytes,
        referrers: attached.into_iter().collect(),
    })
}

/// With BAREROOT_TRACE set, print how long a build stage took (stderr):
/// since `since` (the stage's own start), and since the first trace.
fn trace(what: &str, since: std::time::Instant) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    if *ON.get_or_init(|| std::env::var_os("BAREROOT_TRACE").is_some()) {
        eprintln!(
            "bareroot: trace: {what} at {:?} ({:?} in all{})",
            since.elapsed(),
            start.elapsed(),
            memory()
        );
    }
}

/// The process's resident and peak resident memory so far (Linux), for a
/// trace line: ", RSS 12 MiB, peak 40 MiB"; empty where unknown.
fn memory() -> String {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return String::new();
    };
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(peak)) => format!(", RSS {} MiB, peak {} MiB", rss / 1024, peak / 1024),
        _ => String::new(),
    }
}

/// `sbom-<platform>.spdx.json`, e.g. `sbom-linux-arm64-v8.spdx.json`.
pub fn sbom_file_name(platform: &Platform) -> String {
    format!("sbom-{}.spdx.json", platform.slug())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_precedence_and_validation() {
        assert_eq!(resolve_epoch(None, None, None).unwrap(), 0);
        assert_eq!(resolve_epoch(None, None, Some(5)).unwrap(), 5);
        assert_eq!(resolve_epoch(None, Some("7"), Some(5)).unwrap(), 7);
        assert_eq!(resolve_epoch(Some(9), Some("7"), Some(5)).unwrap(), 9);
        for bad in ["", "-1", "1.5", "+3", " 3", "abc", "99999999999999999999"] {
            let e = resolve_epoch(None, Some(bad), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("SOURCE_DATE_EPOCH"), "{bad}: {e}");
        }
    }
}
