//! The build: a validated recipe → one image per platform (plan → layer →
//! config → manifest) → the top descriptor (the manifest, or an index over
//! several) → an OCI image layout, written beside the output and moved into
//! place only when complete.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::Cache;
use crate::dpkg::DpkgDb;
use crate::error::{Error, IoResultExt, Result, ResultExt};
use crate::layer::compress::Compression;
use crate::layer::{self, LayerInfo};
use crate::loader::Loader;
use crate::oci::{
    self, Descriptor, History, ImageConfigJson, Index, LayoutWriter, Manifest, RootFs,
    RuntimeConfig,
};
use crate::plan::{Item, ItemKind, Plan, Planner, FILE_MODE};
use crate::platform::Platform;
use crate::recipe::ImagePath;
use crate::recipe::Recipe;
use crate::sbom;
use crate::timefmt::rfc3339;
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
    if epoch > layer::MAX_EPOCH {
        return Err(Error::msg(format!(
            "set epoch: {epoch} is later than a tar header can record ({})",
            layer::MAX_EPOCH
        )));
    }
    Ok(epoch)
}

/// Manifest annotation: the bareroot version that built the image.
pub const ANNOTATION_VERSION: &str = "dev.bareroot.version";
/// Manifest annotation: the layer's compression and its implementation
/// ([`Compression::describe`]).
pub const ANNOTATION_COMPRESSION: &str = "dev.bareroot.compression";

/// Build the recipe into an OCI image layout.
pub fn build(recipe: &Recipe, opts: &BuildOptions) -> Result<BuildResult> {
    let epoch = resolve_epoch(opts.epoch, opts.source_date_epoch.as_deref(), recipe.epoch)?;
    let output = opts
        .output
        .clone()
        .unwrap_or_else(|| Path::new("out").join(&recipe.name));
    let toolchains = toolchains_for(recipe, opts)?;
    // The stat cache of input digests; --no-cache builds without it.
    let stat_cache = opts
        .cache
        .as_ref()
        .filter(|_| !opts.no_cache)
        .map(|c| c.root().join("digests.json"));
    if let Some(file) = &stat_cache {
        crate::digest::load(file);
    }
    let t0 = std::time::Instant::now();
    let staging = Staging::new(&output)?;
    let mut layout = LayoutWriter::new(&staging.dir)?;

    let mut images = Vec::new();
    for platform in &recipe.platforms {
        let image = build_platform(recipe, platform, opts, &toolchains, epoch, &mut layout)
            .context_with(|| format!("build image {} for {platform}", recipe.name))?;
        images.push(image);
    }

    let mut ref_name = BTreeMap::new();
    ref_name.insert(oci::ANNOTATION_REF_NAME.to_string(), recipe.tag.clone());
    let top = if let [only] = images.as_slice() {
        Descriptor {
            annotations: ref_name,
            ..only.manifest.clone()
        }
    } else {
        let index = Index {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_INDEX.into()),
            manifests: images.iter().map(|i| i.manifest.clone()).collect(),
            annotations: BTreeMap::new(),
        };
        Descriptor {
            annotations: ref_name,
            ..layout.put_json(oci::MEDIA_TYPE_INDEX, &index)?
        }
    };
    let referrers = images.iter().flat_map(|i| i.referrers.clone()).collect();
    layout.finish(top.clone(), referrers)?;
    trace("layout finished", t0);
    opts.progress.finish();
    if let Some(file) = &stat_cache {
        crate::digest::save(file, 500_000);
    }
    trace("stat cache saved", t0);
    staging.commit()?;
    trace("committed", t0);
    Ok(BuildResult {
        output,
        epoch,
        top,
        images,
    })
}

/// Resolve one platform's plan, package metadata included.
pub fn plan_platform(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
) -> Result<Plan> {
    plan_with_packages(recipe, platform, opts, toolchains).map(|(plan, _)| plan)
}

/// The plan and the dpkg databases its files came from. For every file a
/// package owns, the image gets what scanners read (as distroless has it):
/// `/var/lib/dpkg/status.d/<package>` and `<package>.md5sums`, the
/// package's copyright file, and `/etc/os-release`.
pub fn plan_with_packages(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
) -> Result<(Plan, Vec<DpkgDb>)> {
    let t0 = std::time::Instant::now();
    let toolchain = toolchains.get(platform)?;
    let given = opts
        .sysroots
        .get(platform)
        .or_else(|| recipe.sysroots.get(platform));
    let roots: Vec<PathBuf> = match given {
        Some(dir) => vec![dir.clone()],
        None if toolchain.is_host() => vec![PathBuf::from("/")],
        // The cross tree has no dpkg database; the host's knows the
        // multiarch packages of this architecture.
        None => vec![PathBuf::from("/")],
    };
    // The dpkg status and file lists are read and indexed on another
    // thread while the closures are resolved.
    let (planned, ahead) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let ahead = roots
                .iter()
                .map(|r| DpkgDb::read_ahead(r))
                .collect::<Vec<_>>();
            trace("dpkg read ahead", t0);
            ahead
        });
        let planned = with_planner(recipe, platform, opts, toolchains, |p| p.plan());
        trace("closures resolved", t0);
        (planned, reader.join().unwrap_or_default())
    });
    let mut plan = planned?;
    trace("planner", t0);
    // Only the file names the image can hold are indexed: its files, the
    // copyright files and os-release added below.
    let mut names: HashSet<OsString> = plan
        .entries
        .values()
        .filter_map(|i| match &i.kind {
            ItemKind::File { src, .. } => src.file_name().map(OsString::from),
            _ => None,
        })
        .collect();
    names.extend(["copyright", "os-release"].map(OsString::from));
    trace("names", t0);
    let mut dbs = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        if let Some(db) = DpkgDb::load_with(r, Some(&names), ahead.get(i))? {
            dbs.push(db);
        }
    }
    trace("dbs", t0);
    if dbs.is_empty() {
        return Ok((plan, dbs));
    }
    trace("dpkg load", t0);
    let why = "package metadata for scanners";
    let fail = |m: String| Error::msg(format!("{why}: {m}"));
    let file_item = |src: PathBuf| -> Result<Item> {
        let size = fs::metadata(&src).with_path("stat", &src)?.len();
        Ok(Item {
            kind: ItemKind::File { src, size },
            mode: FILE_MODE,
            uid: 0,
            gid: 0,
            why: why.into(),
            explicit: false,
        })
    };
    for (at, src) in sbom::copyright_files(&plan, &dbs) {
        let at = ImagePath::new(&at).map_err(&fail)?;
        if !plan.entries.contains_key(&at) {
            plan.insert(&at, file_item(src)?).map_err(&fail)?;
        }
    }
    trace("copyright", t0);
    // os-release (for scanners to know the distribution) when any file of
    // the image belongs to a package; its package joins status.d too.
    let owned_any = plan.entries.values().any(|i| match &i.kind {
        ItemKind::File { src, .. } => dbs.iter().any(|db| db.owner(src).is_some()),
        _ => false,
    });
    let os_release = ImagePath::new("/etc/os-release").expect("valid");
    if owned_any && !plan.entries.contains_key(&os_release) {
        for candidate in ["etc/os-release", "usr/lib/os-release"] {
            if let Ok(real) = fs::canonicalize(dbs[0].root().join(candidate)) {
                plan.insert(&os_release, file_item(real)?).map_err(&fail)?;
                break;
            }
        }
    }
    let metadata = sbom::package_metadata(&plan, &dbs)?;
    for (at, bytes) in metadata {
        let at = ImagePath::new(&at).map_err(&fail)?;
        let item = Item {
            kind: ItemKind::Data {
                bytes: bytes.into(),
            },
            mode: FILE_MODE,
            uid: 0,
            gid: 0,
            why: why.into(),
            explicit: true,
        };
        plan.insert(&at, item).map_err(&fail)?;
    }
    Ok((plan, dbs))
}

/// Why `target` is in the image the recipe makes for `platform`.
pub fn explain_platform(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
    target: &str,
) -> Result<String> {
    with_planner(recipe, platform, opts, toolchains, |p| {
        let resolver = p.resolver;
        let (plan, closures) = p.plan_with_closures()?;
        crate::sink::why::explain(&plan, &closures, resolver, target)
    })
}

/// Set up the sysroot, resolver and planner for one platform and hand the
/// planner to `f`.
fn with_planner<T>(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
    f: impl FnOnce(Planner) -> Result<T>,
) -> Result<T> {
    let toolchain = toolchains.get(platform)?;
    let given = opts
        .sysroots
        .get(platform)
        .or_else(|| recipe.sysroots.get(platform));
    let loader = Loader::for_build(toolchain, given.map(PathBuf::as_path))?
        .with_dlopen(recipe.runtime.dlopen);
    let resolver = loader.resolver();
    f(Planner::new(recipe, platform, toolchain, &resolver)
        .with_sysroot(loader.description().to_string()))
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

fn build_platform(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
    epoch: u64,
    layout: &mut LayoutWriter,
) -> Result<BuiltImage> {
    let t0 = std::time::Instant::now();
    opts.progress
        .stage(format!("{platform}: finding closures and package metadata"));
    let (plan, dbs) = plan_with_packages(recipe, platform, opts, toolchains)?;
    trace("plan", t0);
    let (files, bytes) = plan.file_stats();

    // The cache is looked up only when every input's digests are known
    // from the stat cache (or earlier in this process): making the key
    // would otherwise read every input once more before the layer pass,
    // which computes the digests as it reads. An entry missed that way is
    // rebuilt to the same bytes and stored again.
    let inputs: Vec<PathBuf> = plan.input_files().map(Path::to_path_buf).collect();
    let cache = opts.cache.as_ref().filter(|_| !opts.no_cache);
    let known = cache.and_then(|_| crate::digest::all_known(&inputs));
    let early_key = match &known {
        Some(known) => Some(Cache::key(
            &plan,
            epoch,
            opts.compression,
            crate::digest::Source { read: Some(known) },
        )?),
        None => None,
    };
    let cached = match (cache, &early_key) {
        (Some(c), Some(k)) => c.get(k),
        _ => None,
    };
    trace("key", t0);
    // The layer's cache key, when there is a cache (it also keys the SBOM).
    let mut layer_key = early_key.clone();
    // The inputs' digests as the layer pass read them (or as the cache key
    // was made of): the key and the SBOM describe those bytes even if a
    // file changes afterwards.
    let read;
    let mut sbom_facts = None;
    let mut pending = None;
    let layer = match cached {
        Some((info, blob)) => {
            layout.import_blob(&blob, &info.digest)?;
            // The SBOM, if made, describes the digests the key was made of.
            read = known;
            info
        }
        None => {
            let (file, temp) = layout.temp_file()?;
            opts.progress.stage(format!(
                "{platform}: writing the layer ({files} files, {} MB, {})",
                bytes / 1_000_000,
                opts.compression
            ));
            // What the SBOM needs besides the digests is gathered meanwhile.
            let (written, prepared) = std::thread::scope(|scope| {
                let prepare =
                    std::thread::Builder::new().spawn_scoped(scope, || sbom::prepare(&plan, &dbs));
                let written = layer::write_layer(
                    &plan,
                    epoch,
                    opts.compression,
                    opts.jobs(),
                    &opts.progress,
                    file,
                    &temp,
                );
                // Without a thread, or on an error, the SBOM gathers the
                // facts itself if it is made (and reports the error then).
                let prepared = prepare.ok().and_then(|t| {
                    t.join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                        .ok()
                });
                (written, prepared)
            });
            let (layer, file, inputs) = written?;
            sbom_facts = prepared;
            trace("layer written", t0);
            // The layer reaches the disk while the JSON and the SBOM are
            // made; it is in place before they are cached or referred to.
            pending = Some(layout.commit_later(file, temp, layer.digest.clone()));
            read = Some(inputs);
            if opts.cache.is_some() {
                // Made again from what was read (an early key describes
                // the files as they were before the pass).
                let source = crate::digest::Source {
                    read: read.as_ref(),
                };
                layer_key = Some(Cache::key(&plan, epoch, opts.compression, source)?);
            }
            layer
        }
    };
    trace("layer", t0);
    let created = rfc3339(epoch);
    let c = &recipe.config;
    let config = ImageConfigJson {
        created: Some(created.clone()),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: RuntimeConfig {
            user: c.user.clone(),
            exposed_ports: c
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), BTreeMap::new()))
                .collect(),
            env: {
                let mut env = c.env.clone();
                let has = |k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
                if recipe.runtime.ca_certificates && !has("SSL_CERT_FILE") {
                    env.push(format!("SSL_CERT_FILE={}", crate::plan::runtime::CA_BUNDLE));
                }
                env
            },
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.workdir.clone(),
            labels: c.labels.clone(),
            stop_signal: c.stop_signal.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("bareroot build {}", recipe.name)),
            comment: Some(format!("{files} files from the recipe and their closure")),
        }],
    };
    let config_desc = layout.put_json(oci::MEDIA_TYPE_CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config: config_desc,
        layers: vec![Descriptor::of(
            layer.media_type,
            layer.digest.clone(),
            layer.size,
        )],
        // What made the bytes, for whoever wonders why a digest changed.
        annotations: BTreeMap::from([
            (
                ANNOTATION_VERSION.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                ANNOTATION_COMPRESSION.to_string(),
                opts.compression.describe(),
            ),
        ]),
        artifact_type: None,
        subject: None,
    };
    let mut desc = layout.put_json(oci::MEDIA_TYPE_MANIFEST, &manifest)?;
    let subject = desc.clone();
    desc.platform = Some(platform.into());
    // The SPDX SBOM, next to index.json; its namespace and timestamps
    // derive from the manifest digest and the epoch.
    // The SBOM is a function of the layer's key (every path, mode and
    // input digest, the package metadata files, bareroot's version), the
    // manifest digest, name, tag and platform, and what it reads outside
    // the plan (sbom::outside_facts): kept beside the cached layer.
    let sbom_name = {
        let id = format!(
            "{}\0{}\0{platform}\0{}\0{}",
            recipe.name,
            recipe.tag,
            desc.digest,
            match &sbom_facts {
                Some(p) => p.outside.clone(),
                None => sbom::outside_facts(&plan, &dbs),
            }
        );
        format!("sbom-{}.spdx.json", &layer::digest_of(id.as_bytes())[7..])
    };
    let cached_sbom = match (cache, &layer_key) {
        (Some(c), Some(k)) => c.get_extra(k, &sbom_name),
        _ => None,
    };
    let fresh_sbom = cached_sbom.is_none();
    let sbom_bytes = match cached_sbom {
        Some(bytes) => bytes,
        None => sbom::spdx(&sbom::SbomInput {
            name: &recipe.name,
            tag: &recipe.tag,
            platform,
            epoch,
            manifest_digest: &desc.digest,
            plan: &plan,
            dbs: &dbs,
            digests: crate::digest::Source {
                read: read.as_ref(),
            },
            prepared: sbom_facts.as_ref(),
        })?,
    };
    trace("sbom", t0);
    if let Some(p) = pending {
        layout.commit_pending(p)?;
        trace("layer synced", t0);
        if let (Some(c), Some(k)) = (&opts.cache, &layer_key) {
            // A cache that can't be written only costs time next build.
            let _ = c.put(k, &layer, &layout.blob_path(&layer.digest)?);
        }
    }
    if let (true, Some(c), Some(k)) = (fresh_sbom, &opts.cache, &layer_key) {
        let _ = c.put_extra(k, &sbom_name, &sbom_bytes);
    }
    layout.put_file(&sbom_file_name(platform), &sbom_bytes)?;
    // --attach-sbom: the SBOM as an OCI artifact whose subject is the image
    // manifest, listed in index.json and pushed beside the image.
    let mut referrers = Vec::new();
    if opts.attach_sbom {
        let blob = layout.put_bytes(oci::MEDIA_TYPE_SPDX, &sbom_bytes)?;
        let empty = layout.put_bytes(oci::MEDIA_TYPE_EMPTY, b"{}")?;
        let artifact = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            config: empty,
            layers: vec![blob],
            annotations: BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                rfc3339(epoch),
            )]),
            artifact_type: Some(oci::MEDIA_TYPE_SPDX.into()),
            subject: Some(subject),
        };
        let mut d = layout.put_json(oci::MEDIA_TYPE_MANIFEST, &artifact)?;
        d.artifact_type = Some(oci::MEDIA_TYPE_SPDX.into());
        referrers.push(d);
    }
    Ok(BuiltImage {
        platform: platform.clone(),
        manifest: desc,
        layer,
        files,
        bytes,
        referrers,
    })
}

/// With BAREROOT_TRACE set, print how long a build stage took (stderr).
fn trace(what: &str, since: std::time::Instant) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("BAREROOT_TRACE").is_some()) {
        eprintln!("bareroot: trace: {what} at {:?}", since.elapsed());
    }
}

/// `sbom-<platform>.spdx.json`, e.g. `sbom-linux-arm64-v8.spdx.json`.
pub fn sbom_file_name(platform: &Platform) -> String {
    format!("sbom-{}.spdx.json", platform.slug())
}

/// A layout being written next to its final place. Dropped without
/// `commit`, it is removed and the previous output stays as it was.
struct Staging {
    dir: PathBuf,
    output: PathBuf,
    /// Parent directories this build created, outermost first: removed
    /// again if the build fails.
    created: Vec<PathBuf>,
    done: bool,
    /// Held until the build is done or abandoned.
    _lock: OutputLock,
}

impl Staging {
    fn new(output: &Path) -> Result<Staging> {
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
    fn commit(mut self) -> Result<()> {
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
        oci::sync_dir(&parent)
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
