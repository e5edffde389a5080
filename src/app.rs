//! The commands: parsed arguments → library calls → what is printed.
//! Output goes to the writers given, so tests can capture it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::build::{self, BuildOptions};
use crate::cli::{
    BuildArgs, ClosureArgs, Command, CompletionsArgs, InspectArgs, LoadArgs, ManArgs, PullArgs,
    PushArgs, RunArgs, WhyArgs,
};
use crate::error::{Error, Result, ResultExt};
use crate::loader::closure::{Closure, Root, Side};
use crate::loader::Loader;
use crate::oci::read::choose_platform;
use crate::oci::Layout;
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::sink;
use crate::sink::inspect;
use crate::toolchain::Toolchains;

/// Run a command; the returned number is the process exit code.
pub fn run(command: Command, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    match command {
        Command::Build(a) => cmd_build(a, out, err),
        Command::Closure(a) => cmd_closure(a, out, err),
        Command::Inspect(a) => cmd_inspect(a, out),
        Command::Run(a) => cmd_run(a),
        Command::Push(a) => cmd_push(a, out, err),
        Command::Why(a) => cmd_why(a, out),
        Command::Pull(a) => cmd_pull(a, out, err),
        Command::Load(a) => cmd_load(a, out),
        Command::Completions(a) => cmd_completions(a, out),
        Command::Man(a) => cmd_man(a, out),
    }
}

fn cmd_completions(a: CompletionsArgs, out: &mut dyn Write) -> Result<i32> {
    use clap_complete::Shell;
    let shell = match a.shell {
        crate::cli::Shell::Bash => Shell::Bash,
        crate::cli::Shell::Zsh => Shell::Zsh,
        crate::cli::Shell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "bareroot", &mut script);
    write_out(out, &String::from_utf8_lossy(&script))?;
    Ok(0)
}

fn cmd_man(a: ManArgs, out: &mut dyn Write) -> Result<i32> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    match &a.output {
        None => {
            // As generate_to renders bareroot.1: without the `help` command,
            // which has no page of its own.
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd.disable_help_subcommand(true))
                .render(&mut page)
                .map_err(|e| Error::io("render man page", "bareroot.1", e))?;
            write_out(out, &String::from_utf8_lossy(&page))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| Error::io("write man pages to", dir, e))?;
        }
    }
    Ok(0)
}

/// Write one `REF@DIGEST` line per pushed reference to `file`, through a
/// temporary file beside it (a reader sees the old file or the new one).
fn write_image_refs(file: &Path, reports: &[crate::registry::PushReport]) -> Result<()> {
    let mut text = String::new();
    for r in reports {
        // A reference given with its digest is written with it once.
        let name = r
            .reference
            .split_once('@')
            .map_or(&*r.reference, |(n, _)| n);
        text.push_str(&format!("{name}@{}\n", r.digest));
    }
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".bareroot-image-refs-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create temporary file in", &dir, e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io("write", file, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io("write", file, e))?;
    }
    tmp.persist(file)
        .map_err(|e| Error::io("write image refs", file, e.error))?;
    Ok(())
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("write", "standard output", e))
}

fn cmd_build(a: BuildArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    if a.image_refs.is_some() && a.push.is_empty() {
        return Err(Error::msg("--image-refs needs --push"));
    }
    let recipe = Recipe::load(&a.recipe)?;
    let sysroots = parse_sysroots(&a.sysroot)?;
    // Parse references and choose the docker-archive's platform before
    // building: a typo should not cost a build.
    let refs = parse_refs(&a.push)?;
    let archive_platform = match &a.docker_archive {
        Some(_) => Some(archive_platform(&recipe, a.platform.as_deref())?),
        None => None,
    };
    let load = match &a.load {
        Some(engine) => Some((
            engine.parse::<crate::sink::load::Engine>()?,
            archive_platform_for("--load", &recipe, a.platform.as_deref())?,
        )),
        None => None,
    };
    let scratch = if a.output.is_none()
        && (a.oci_archive.is_some()
            || a.docker_archive.is_some()
            || !refs.is_empty()
            || load.is_some())
    {
        Some(
            tempfile::Builder::new()
                .prefix("bareroot-build-")
                .tempdir()
                .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?,
        )
    } else {
        None
    };
    let output = match &scratch {
        Some(t) => Some(t.path().join("layout")),
        None => a.output.clone(),
    };
    let opts = BuildOptions {
        output,
        epoch: a.epoch,
        source_date_epoch: std::env::var_os("SOURCE_DATE_EPOCH")
            .map(|v| v.to_string_lossy().into_owned()),
        sysroots,
        toolchains: load_toolchains(&a.toolchains)?,
        attach_sbom: a.attach_sbom,
        compression: crate::layer::compress::Compression::parse(&a.compression)
            .map_err(|m| Error::msg(format!("parse --compression {m}")))?,
        jobs: a.jobs,
        cache: crate::cache::Cache::from_env(),
        progress: crate::progress::Progress::start(a.quiet),
        no_cache: a.no_cache
            || std::env::var_os("BAREROOT_NO_CACHE").is_some_and(|v| v != "0" && !v.is_empty()),
        base: a.base.clone(),
        registry: crate::registry::Options {
            insecure: a.insecure_registry.clone(),
            quiet: a.quiet,
            chunk_size: a.chunk_size,
        },
    };
    let result = build::build(&recipe, &opts);
    opts.progress.finish();
    let result = result?;
    for n in &result.notes {
        let _ = writeln!(err, "bareroot: note: {n}");
    }
    for b in &result.bases {
        if !a.quiet {
            let _ = writeln!(err, "base {}: {}@{}", b.source, b.name, b.digest);
        }
        if !b.pinned {
            let _ = writeln!(
                err,
                "bareroot: note: base {} is named by tag; the build is reproducible only when \
                 pinned: {}@{}",
                b.source, b.name, b.digest
            );
        }
    }
    if let Some(f) = &a.oci_archive {
        sink::archive::write_oci_archive(&result.output, f, result.epoch)?;
        if !a.quiet {
            let _ = writeln!(err, "wrote oci-archive {}", f.display());
        }
    }
    if let (Some(f), Some(platform)) = (&a.docker_archive, &archive_platform) {
        let layout = Layout::open(&result.output)?;
        let image = layout
            .choose(Some(platform))
            .map_err(|e| e.context(format!("write docker-archive {}", f.display())))?;
        let repo_tag = format!("{}:{}", recipe.name, recipe.tag);
        sink::archive::write_docker_archive(&layout, &image, &repo_tag, f, result.epoch)?;
        if !a.quiet {
            let _ = writeln!(
                err,
                "wrote docker-archive {} ({})",
                f.display(),
                image.platform.display()
            );
        }
    }
    if let Some((engine, platform)) = load {
        let opts = crate::sink::load::LoadOptions {
            engine,
            platform: Some(platform),
            namespace: a.namespace.clone(),
            repo_tag: format!("{}:{}", recipe.name, recipe.tag),
            epoch: result.epoch,
        };
        let answer = crate::sink::load::load(&result.output, &opts)?;
        if !a.quiet {
            let _ = writeln!(err, "{answer}");
        }
    }
    if !refs.is_empty() {
        let opts = crate::registry::PushOptions {
            insecure: a.insecure_registry.clone(),
            quiet: a.quiet,
            chunk_size: a.chunk_size,
        };
        let reports = crate::registry::push(&result.output, &refs, &opts)?;
        if !a.quiet {
            report_pushes(err, &reports);
        }
        if let Some(f) = &a.image_refs {
            write_image_refs(f, &reports)?;
        }
    }
    if !a.quiet && scratch.is_none() {
        for i in &result.images {
            let _ = writeln!(
                err,
                "{}: {} files, {} bytes → layer {} ({} bytes)",
                i.platform, i.files, i.bytes, i.layer.digest, i.layer.size
            );
        }
        let _ = writeln!(
            err,
            "wrote {}:{} to {}",
            recipe.name,
            recipe.tag,
            result.output.display()
        );
    }
    write_out(out, &format!("{}\n", result.top.digest))?;
    Ok(0)
}

/// The one platform `--docker-archive` takes, from the recipe's, by the
/// rule `run` and `why` follow ([`choose_platform`]).
fn archive_platform(recipe: &Recipe, flag: Option<&str>) -> Result<Platform> {
    archive_platform_for("--docker-archive", recipe, flag)
}

/// The one platform an option that takes one image (`--docker-archive`,
/// `--load`) takes, checked before the build.
fn archive_platform_for(option: &str, recipe: &Recipe, flag: Option<&str>) -> Result<Platform> {
    let fail = |e: Error| e.context(format!("build image {} for {option}", recipe.name));
    let want = flag.map(str::parse::<Platform>).transpose().map_err(fail)?;
    choose_platform(
        &recipe.platforms,
        |p| Some(p.clone()),
        Platform::to_string,
        want.as_ref(),
        "the recipe builds",
    )
    .cloned()
    .map_err(fail)
}

fn cmd_closure(a: ClosureArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let platform = match &a.platform {
        Some(p) => p.parse()?,
        None => Platform::host(),
    };
    let toolchains = load_toolchains(&a.toolchains)?;
    let toolchain = toolchains.get(&platform)?;
    let loader = Loader::open(toolchain, a.sysroot.as_deref())?;
    let resolver = loader.resolver();
    let mut results: Vec<(String, Closure)> = Vec::new();
    let mut code = 0;
    // Files are analyzed in parallel (the resolver's parse cache is
    // shared); the output keeps the order given.
    use rayon::prelude::*;
    let analyzed: Vec<Result<Closure>> = a
        .files
        .par_iter()
        .map(|f| {
            let (side, path) = if f.is_absolute() {
                (Side::Sysroot, f.clone())
            } else {
                let abs = std::path::absolute(f).map_err(|e| Error::io("resolve", f, e))?;
                (Side::Host, abs)
            };
            let root = Root {
                side,
                image_path: path.clone(),
                path,
            };
            resolver
                .closure(&root)
                .map_err(|m| Error::msg(format!("analyze {} for {platform}: {m}", f.display())))
        })
        .collect();
    for (f, closure) in a.files.iter().zip(analyzed) {
        let closure = closure?;
        for m in &closure.missing {
            code = 1;
            let line = format!(
                "bareroot: resolve {} needed by {}: not found for {platform} in {}",
                m.name,
                m.needed_by.display(),
                loader.name()
            );
            let _ = writeln!(err, "{}", crate::error::one_line(&line));
        }
        results.push((f.display().to_string(), closure));
    }
    let text = if a.json {
        let arr: Vec<serde_json::Value> = results.iter().map(|(f, c)| closure_json(f, c)).collect();
        format!(
            "{}\n",
            serde_json::to_string_pretty(&arr).expect("JSON values serialize")
        )
    } else {
        results.iter().map(|(f, c)| closure_tree(f, c)).collect()
    };
    write_out(out, &text)?;
    Ok(code)
}

fn load_toolchains(extra: &[PathBuf]) -> Result<Toolchains> {
    let mut t = Toolchains::embedded();
    for p in extra {
        t.add_path(p)?;
    }
    Ok(t)
}

fn closure_json(file: &str, c: &Closure) -> serde_json::Value {
    let mut libs: Vec<serde_json::Value> = c
        .libraries
        .iter()
        .map(|d| json!({"soname": d.name, "path": d.path.to_string_lossy()}))
        .collect();
    for m in &c.missing {
        if Some(&m.name) != c.interpreter_path.as_ref() {
            libs.push(json!({"soname": m.name, "path": null}));
        }
    }
    json!({
        "file": file,
        "interpreter": c.interpreter_path,
        "libraries": libs,
    })
}

/// lddtree-style text: each library under the object that first needed it.
fn closure_tree(file: &str, c: &Closure) -> String {
    let mut s = String::new();
    match &c.interpreter {
        Some(i) => s.push_str(&format!("{file} (interpreter => {})\n", i.path.display())),
        None => s.push_str(&format!("{file}\n")),
    }
    let root = c
        .libraries
        .first()
        .map(|d| d.needed_by.clone())
        .or_else(|| c.missing.first().map(|m| m.needed_by.clone()))
        .unwrap_or_default();
    fn walk(s: &mut String, c: &Closure, parent: &Path, depth: usize, seen: &mut Vec<PathBuf>) {
        for d in c.libraries.iter().filter(|d| d.needed_by == parent) {
            s.push_str(&format!(
                "{}{} => {}\n",
                "    ".repeat(depth),
                d.name,
                d.path.display()
            ));
            if !seen.contains(&d.path) {
                seen.push(d.path.clone());
                walk(s, c, &d.path, depth + 1, seen);
            }
        }
        for m in c.missing.iter().filter(|m| m.needed_by == parent) {
            s.push_str(&format!(
                "{}{} => not found\n",
                "    ".repeat(depth),
                m.name
            ));
        }
    }
    let mut seen = Vec::new();
    walk(&mut s, c, &root, 1, &mut seen);
    s
}

fn cmd_inspect(a: InspectArgs, out: &mut dyn Write) -> Result<i32> {
    let reports = inspect::inspect(&a.image)?;
    let text = if a.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&reports).expect("reports serialize")
        )
    } else {
        inspect::render(&reports)
    };
    write_out(out, &text)?;
    Ok(0)
}

fn cmd_run(a: RunArgs) -> Result<i32> {
    let opts = crate::sink::run::RunOptions {
        platform: a.platform.as_deref().map(str::parse).transpose()?,
        args: (!a.args.is_empty()).then_some(a.args),
        entrypoint: a.entrypoint,
        env: a.env,
    };
    for e in &opts.env {
        if !e.contains('=') {
            return Err(Error::msg(format!("parse --env {e:?}: expected KEY=VALUE")));
        }
    }
    crate::sink::run::run(&a.image, &opts, &load_toolchains(&a.toolchains)?)
}

fn parse_refs(refs: &[String]) -> Result<Vec<crate::registry::Reference>> {
    refs.iter().map(|r| r.parse()).collect()
}

fn report_pushes(err: &mut dyn Write, reports: &[crate::registry::PushReport]) {
    for r in reports {
        let _ = writeln!(
            err,
            "pushed {}@{}: {} blobs uploaded ({} bytes), {} already present, {} mounted",
            r.reference,
            r.digest,
            r.blobs_uploaded,
            r.bytes_uploaded,
            r.blobs_present,
            r.blobs_mounted
        );
    }
}

fn cmd_push(a: PushArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let refs = parse_refs(&a.refs)?;
    let opts = crate::registry::PushOptions {
        insecure: a.insecure_registry,
        quiet: a.quiet,
        chunk_size: a.chunk_size,
    };
    let reports = crate::registry::push(&a.image, &refs, &opts)?;
    if !a.quiet {
        report_pushes(err, &reports);
    }
    if let Some(f) = &a.image_refs {
        write_image_refs(f, &reports)?;
    }
    if let Some(r) = reports.first() {
        write_out(out, &format!("{}\n", r.digest))?;
    }
    Ok(0)
}

fn parse_sysroots(args: &[String]) -> Result<BTreeMap<Platform, PathBuf>> {
    let mut sysroots = BTreeMap::new();
    for s in args {
        let (p, dir) = s.split_once('=').ok_or_else(|| {
            Error::msg(format!(
                "parse --sysroot {s:?}: expected PLATFORM=DIR, e.g. linux/arm64=/srv/arm64"
            ))
        })?;
        let platform: Platform = p
            .parse()
            .map_err(|e: Error| Error::msg(format!("parse --sysroot {s:?}: {e}")))?;
        sysroots.insert(platform, PathBuf::from(dir));
    }
    Ok(sysroots)
}

fn cmd_why(a: WhyArgs, out: &mut dyn Write) -> Result<i32> {
    let text = why_text(&a).context_with(|| format!("why {} {}", a.target.display(), a.path))?;
    write_out(out, &text)?;
    Ok(0)
}

/// Explain `a.path` in a built layout, or in the image a recipe makes.
fn why_text(a: &WhyArgs) -> Result<String> {
    let platform: Option<Platform> = a.platform.as_deref().map(str::parse).transpose()?;
    let toolchains = load_toolchains(&a.toolchains)?;
    if a.target.is_dir() {
        let layout = Layout::open(&a.target)?;
        let image = layout.choose(platform.as_ref())?;
        return crate::sink::why::explain_image(&layout, &image, &toolchains, &a.path);
    }
    let recipe = Recipe::load(&a.target)?;
    let opts = BuildOptions {
        sysroots: parse_sysroots(&a.sysroot)?,
        toolchains,
        base: a.base.clone(),
        // Where a pulled base is kept.
        cache: crate::cache::Cache::from_env(),
        ..Default::default()
    };
    let p = match platform {
        Some(p) => p,
        None if recipe.platforms.contains(&Platform::host()) => Platform::host(),
        None => recipe.platforms[0].clone(),
    };
    let toolchains = build::toolchains_for(&recipe, &opts)?;
    let base = build::open_base(&recipe, &p, &opts)?;
    build::plan::with_planned(
        &recipe,
        &p,
        &opts,
        &toolchains,
        base.as_ref(),
        |planned, closures, resolver| {
            let lower = base.as_ref().map(|b| b.lower());
            crate::sink::why::explain(&planned.plan, closures, resolver, &a.path, lower.as_deref())
        },
    )
}

fn cmd_pull(a: PullArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let source = crate::base::Source::parse(&a.source, Path::new("."))?;
    let mut platforms = a
        .platform
        .iter()
        .map(|p| p.parse::<Platform>())
        .collect::<Result<Vec<_>>>()?;
    if platforms.is_empty() && matches!(source, crate::base::Source::Rootfs { .. }) {
        platforms.push(Platform::host());
    }
    let all = a.platform.is_empty();
    let opts = crate::base::FetchOptions {
        cache: crate::cache::Cache::from_env().map(|c| c.root().to_path_buf()),
        registry: crate::registry::Options {
            insecure: a.insecure_registry.clone(),
            quiet: a.quiet,
            chunk_size: 0,
        },
        compression: crate::layer::compress::Compression::Gzip {
            level: crate::layer::compress::Compression::DEFAULT_GZIP_LEVEL,
        },
        jobs: 0,
    };
    let fetched = crate::base::fetch(&source, &platforms, &opts)?;
    let tag = match &source {
        crate::base::Source::Registry(r) => r.tag.clone().unwrap_or_else(|| "latest".into()),
        crate::base::Source::Oci { tag: Some(t), .. }
        | crate::base::Source::OciArchive { tag: Some(t), .. } => t.clone(),
        _ => "latest".into(),
    };
    let top = crate::base::write_layout(&fetched, &a.output, &tag, all)
        .context_with(|| format!("pull {source} to {}", a.output.display()))?;
    if !a.quiet {
        let _ = writeln!(
            err,
            "pulled {} ({}) to {}",
            fetched.name,
            fetched.platforms().join(", "),
            a.output.display()
        );
    }
    write_out(out, &format!("{}\n", top.digest))?;
    Ok(0)
}

fn cmd_load(a: LoadArgs, out: &mut dyn Write) -> Result<i32> {
    let layout = Layout::open(&a.image)?;
    let top = layout.tops().next().ok_or_else(|| {
        Error::msg(format!(
            "load {}: the layout lists no image",
            a.image.display()
        ))
    })?;
    // The tag docker and podman give the image: the layout's full name,
    // else its directory's name with the layout's tag.
    let tag = top
        .annotations
        .get(crate::oci::ANNOTATION_REF_NAME)
        .cloned()
        .unwrap_or_else(|| "latest".into());
    let repo_tag = match top.annotations.get(crate::oci::ANNOTATION_CONTAINERD_NAME) {
        Some(full) => full.clone(),
        None => {
            let dir = std::fs::canonicalize(&a.image).unwrap_or_else(|_| a.image.clone());
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "image".into());
            format!("{name}:{tag}")
        }
    };
    let epoch = 0;
    let opts = crate::sink::load::LoadOptions {
        engine: a.into.parse()?,
        platform: a.platform.as_deref().map(str::parse).transpose()?,
        namespace: a.namespace,
        repo_tag,
        epoch,
    };
    let answer = crate::sink::load::load(&a.image, &opts)?;
    write_out(out, &format!("{answer}\n"))?;
    Ok(0)
}
