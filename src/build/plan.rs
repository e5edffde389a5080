//! Stage 1, plan: the recipe's entries and their closures for one platform
//! (`plan::Planner` over the platform's [`Loader`]), then the Debian package
//! metadata of the files that packages own (`plan::packages`). The dpkg
//! database is read and indexed on another thread while closures resolve.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

use super::{trace, BuildOptions};
use crate::base::Base;
use crate::dpkg::DpkgDb;
use crate::error::Result;
use crate::loader::closure::Resolver;
use crate::loader::symbols::Checked;
use crate::loader::Loader;
use crate::plan::{packages, Item, ItemKind, Plan, Planner};
use crate::platform::Platform;
use crate::recipe::Libraries;
use crate::recipe::Recipe;
use crate::toolchain::Toolchains;

/// One platform's finished plan: every entry of the image, package
/// metadata included, and the dpkg databases its files came from.
pub struct Planned {
    pub plan: Plan,
    pub dbs: Vec<DpkgDb>,
}

/// Plan one platform's image.
pub fn plan(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
    base: Option<&Base>,
) -> Result<Planned> {
    with_planned(recipe, platform, opts, toolchains, base, |planned, _, _| {
        Ok(planned)
    })
}

/// Plan one platform's image and hand the result, with every closure found
/// and the resolver that found them, to `f` (`why` needs all three).
pub fn with_planned<T>(
    recipe: &Recipe,
    platform: &Platform,
    opts: &BuildOptions,
    toolchains: &Toolchains,
    base: Option<&Base>,
    f: impl FnOnce(Planned, &[Checked], &Resolver) -> Result<T>,
) -> Result<T> {
    let t0 = std::time::Instant::now();
    let toolchain = toolchains.get(platform)?;
    let given = opts
        .sysroots
        .get(platform)
        .or_else(|| recipe.sysroots.get(platform));
    let base_first = recipe
        .base_image
        .as_ref()
        .is_none_or(|b| b.libraries == Libraries::Base);
    let loader = Loader::for_build(toolchain, given.map(PathBuf::as_path))?
        .with_dlopen(recipe.runtime.dlopen)
        .on_base(base.map(|b| {
            let hidden = b
                .removed
                .iter()
                .map(|r| PathBuf::from(r.as_str()))
                .collect();
            (b.root(), hidden, b.name.as_str(), base_first)
        }));
    let resolver = loader.resolver();
    // The dpkg database of the sysroot named, else the host's: the cross
    // tree has none, and the host's knows the multiarch packages of every
    // architecture.
    let roots: Vec<PathBuf> = match given {
        Some(dir) => vec![dir.clone()],
        None => vec![PathBuf::from("/")],
    };
    let (planned, ahead) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let ahead = roots
                .iter()
                .map(|r| DpkgDb::read_ahead(r))
                .collect::<Vec<_>>();
            trace("dpkg read ahead", t0);
            ahead
        });
        let planner = Planner::new(recipe, platform, toolchain, &resolver)
            .with_sysroot(loader.description().to_string())
            .with_base(base.map(Base::lower));
        let planned = planner.plan_with_closures();
        trace("closures resolved", t0);
        (planned, reader.join().unwrap_or_default())
    });
    let (mut plan, closures) = planned?;
    trace("planner", t0);
    let names = indexed_names(&plan);
    let mut dbs = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        if let Some(db) = DpkgDb::load_with(r, Some(&names), ahead.get(i))? {
            dbs.push(db);
        }
    }
    trace("dpkg load", t0);
    packages::add(&mut plan, &dbs)?;
    trace("package metadata", t0);
    if let Some(base) = base {
        if base.squash {
            crate::base::squash_into(&mut plan, base);
        } else {
            whiteouts(&mut plan, base)?;
        }
        plan.base = None;
        trace("base merged", t0);
    }
    f(Planned { plan, dbs }, &closures, &resolver)
}

/// The file names the dpkg index needs to know: the image's files, and the
/// copyright files and os-release that package metadata adds.
fn indexed_names(plan: &Plan) -> HashSet<OsString> {
    let mut names: HashSet<OsString> = plan
        .entries
        .values()
        .filter_map(|i| match &i.kind {
            ItemKind::File { src, .. } => src.file_name().map(OsString::from),
            _ => None,
        })
        .collect();
    names.extend(["copyright", "os-release"].map(OsString::from));
    names
}

/// `[base] remove` in a stacked layer: a whiteout for each removed path,
/// or, where this layer puts something back under it, an opaque
/// directory (a whiteout and new entries in one layer would contradict).
fn whiteouts(plan: &mut Plan, base: &Base) -> Result<()> {
    for r in &base.removed {
        let prefix = format!("{}/", r.as_str());
        let refilled = plan.entries.contains_key(r)
            || plan.entries.keys().any(|p| p.as_str().starts_with(&prefix));
        let why = format!("[base] remove {r}");
        let at = match plan.entries.get(r).map(|i| &i.kind) {
            // An entry of ours at the path replaces what the base had
            // there (a directory with all in it) by itself.
            Some(k) if !matches!(k, ItemKind::Dir) => continue,
            _ if refilled => r.opaque_marker(),
            _ => r.whiteout(),
        };
        plan.entries
            .insert(at, Item::data(Vec::<u8>::new(), why).explicit());
    }
    Ok(())
}
