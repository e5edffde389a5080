//! Debian package metadata, into the plan: for every file of the image that
//! a package owns, what scanners (Trivy, Grype, Syft) read, as distroless
//! has it: `/var/lib/dpkg/status.d/<package>` and `<package>.md5sums`, the
//! package's copyright file, and `/etc/os-release`. Each such entry says
//! which package put it there (`bareroot why`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Item, ItemKind, Plan};
use crate::digest::hex;
pub use crate::dpkg::STATUS_D;
use crate::dpkg::{DpkgDb, Package};
use crate::error::{Error, IoResultExt, Result};
use crate::recipe::ImagePath;

/// How every entry this module adds begins its reason.
const WHY: &str = "package metadata for scanners";

/// Add the package metadata of `dbs` for the plan's files: the copyright
/// files of the owning packages, `/etc/os-release` (for scanners to know
/// the distribution) when any file of the image belongs to a package, and
/// then the status.d files of every owning package, the packages of those
/// added files included.
pub fn add(plan: &mut Plan, dbs: &[DpkgDb]) -> Result<()> {
    if dbs.is_empty() {
        return Ok(());
    }
    let fail = |m: String| Error::msg(format!("{WHY}: {m}"));
    for (at, (src, package)) in copyright_sources(plan, dbs) {
        let at = ImagePath::new(&at).map_err(&fail)?;
        if !plan.entries.contains_key(&at) {
            let why = copyright_why(&package);
            plan.insert(&at, file_item(src, why)?).map_err(&fail)?;
        }
    }
    add_os_release(plan, dbs)?;
    for (at, (bytes, why)) in metadata_files(plan, dbs)? {
        let at = ImagePath::new(&at).map_err(&fail)?;
        plan.insert(&at, Item::data(bytes, why).explicit())
            .map_err(&fail)?;
    }
    Ok(())
}

/// `/etc/os-release`, when the image has a file of a package and none of
/// its own: the first database's, naming the package that owns it.
fn add_os_release(plan: &mut Plan, dbs: &[DpkgDb]) -> Result<()> {
    let owned_any = plan.entries.values().any(|i| match &i.kind {
        ItemKind::File { src, .. } => dbs.iter().any(|db| db.owner(src).is_some()),
        _ => false,
    });
    let os_release = ImagePath::new("/etc/os-release").expect("valid");
    if !owned_any || plan.entries.contains_key(&os_release) {
        return Ok(());
    }
    for candidate in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(real) = fs::canonicalize(dbs[0].root().join(candidate)) {
            let why = match dbs[0].owner(&real) {
                Some(p) => format!(
                    "{WHY}: the distribution's os-release, from package {}",
                    p.name
                ),
                None => format!("{WHY}: the distribution's os-release"),
            };
            plan.insert(&os_release, file_item(real, why)?)
                .map_err(|m| Error::msg(format!("{WHY}: {m}")))?;
            break;
        }
    }
    Ok(())
}

/// Why a package's status.d stanza is in the image.
pub fn status_why(status_name: &str) -> String {
    format!("{WHY}: the dpkg status of package {status_name}")
}

/// Why a package's md5sums list is in the image.
pub fn md5sums_why(status_name: &str) -> String {
    format!("{WHY}: the file list (md5sums) of package {status_name}")
}

/// Why a package's copyright file is in the image.
pub fn copyright_why(package: &str) -> String {
    format!("{WHY}: the copyright file of package {package}")
}

/// Why `/etc/os-release` is in the image.
pub fn os_release_why(package: Option<&str>) -> String {
    match package {
        Some(p) => format!("{WHY}: the distribution's os-release, from package {p}"),
        None => format!("{WHY}: the distribution's os-release"),
    }
}

/// A regular file of the host, root-owned, mode 0644.
fn file_item(src: PathBuf, why: String) -> Result<Item> {
    let size = fs::metadata(&src).with_path("stat", &src)?.len();
    Ok(Item::file(src, size, why))
}

/// A Debian package and the image files it owns.
pub(crate) struct Owned<'a> {
    pub db: &'a DpkgDb,
    pub pkg: &'a Package,
    /// (image path, host path, path as the package lists it), sorted by
    /// image path.
    pub files: Vec<(&'a ImagePath, &'a Path, PathBuf)>,
}

/// The packages owning the plan's regular files, keyed by (name,
/// architecture, version). A file belongs to the first database that owns it.
pub(crate) fn owners<'a>(
    plan: &'a Plan,
    dbs: &'a [DpkgDb],
) -> BTreeMap<(&'a str, &'a str, &'a str), Owned<'a>> {
    let mut out: BTreeMap<(&str, &str, &str), Owned> = BTreeMap::new();
    for (path, item) in &plan.entries {
        let ItemKind::File { src, .. } = &item.kind else {
            continue;
        };
        let Some((db, (pkg, listed))) = dbs
            .iter()
            .find_map(|db| db.owner_entry(src).map(|found| (db, found)))
        else {
            continue;
        };
        out.entry((&pkg.name, &pkg.architecture, &pkg.version))
            .or_insert_with(|| Owned {
                db,
                pkg,
                files: Vec::new(),
            })
            .files
            .push((path, src.as_path(), listed));
    }
    out
}

/// The status.d file name of each owned package: its name, or
/// "name:arch" when two architectures of one package own image files.
fn status_names(owned: &BTreeMap<(&str, &str, &str), Owned>) -> Result<Vec<String>> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for o in owned.values() {
        *count.entry(&o.pkg.name).or_default() += 1;
    }
    let mut seen: BTreeMap<String, &Owned> = BTreeMap::new();
    let mut names = Vec::new();
    for o in owned.values() {
        let name = if count[o.pkg.name.as_str()] > 1 {
            o.pkg.qualified_name()
        } else {
            o.pkg.name.clone()
        };
        if let Some(other) = seen.get(&name) {
            return Err(Error::msg(format!(
                "generate package metadata: package {} owns image files in two versions, \
                 {} (dpkg database in {}) and {} (dpkg database in {})",
                o.pkg.qualified_name(),
                other.pkg.version,
                other.db.root().display(),
                o.pkg.version,
                o.db.root().display()
            )));
        }
        seen.insert(name.clone(), o);
        names.push(name);
    }
    Ok(names)
}

/// Distroless-style dpkg metadata for the packages that own the plan's
/// files: for each, `/var/lib/dpkg/status.d/<package>` (its control stanza)
/// and `/var/lib/dpkg/status.d/<package>.md5sums` (`<md5>  <path>` lines for
/// exactly its files in the image, paths as in the image without the
/// leading "/", sorted). Keys are image paths. Empty when no database owns
/// a file.
pub fn package_metadata(plan: &Plan, dbs: &[DpkgDb]) -> Result<BTreeMap<String, Vec<u8>>> {
    Ok(metadata_files(plan, dbs)?
        .into_iter()
        .map(|(at, (bytes, _))| (at, bytes))
        .collect())
}

/// [`package_metadata`], each file with why it is in the image (naming its
/// package).
fn metadata_files(plan: &Plan, dbs: &[DpkgDb]) -> Result<BTreeMap<String, (Vec<u8>, String)>> {
    let owned = owners(plan, dbs);
    let names = status_names(&owned)?;
    let mut out = BTreeMap::new();
    for (o, name) in owned.values().zip(names) {
        let mut stanza = o.pkg.stanza.clone().into_bytes();
        if !stanza.ends_with(b"\n") {
            stanza.push(b'\n');
        }
        let why = status_why(&name);
        out.insert(format!("{STATUS_D}/{name}"), (stanza, why));
        // dpkg's own record of each file (what `dpkg --verify` checks);
        // a file it has none for (a conffile) is hashed here.
        let recorded = o.db.md5sums(o.pkg)?;
        let mut sums = String::new();
        for (path, src, listed) in &o.files {
            let md5 = match recorded.get(listed) {
                Some(md5) => *md5,
                None => crate::digest::md5_of(src)?,
            };
            sums.push_str(&format!("{}  {}\n", hex(&md5), path.rel()));
        }
        let why = md5sums_why(&name);
        out.insert(
            format!("{STATUS_D}/{name}.md5sums"),
            (sums.into_bytes(), why),
        );
    }
    Ok(out)
}

/// The copyright files of the packages that own the plan's files, for
/// putting into the image beside [`package_metadata`]: image path
/// (`/usr/share/doc/<package>/copyright`) → host path. Packages without a
/// copyright file in their root are left out.
pub fn copyright_files(plan: &Plan, dbs: &[DpkgDb]) -> BTreeMap<String, PathBuf> {
    copyright_sources(plan, dbs)
        .into_iter()
        .map(|(at, (src, _))| (at, src))
        .collect()
}

/// [`copyright_files`], each with its package's qualified name.
fn copyright_sources(plan: &Plan, dbs: &[DpkgDb]) -> BTreeMap<String, (PathBuf, String)> {
    owners(plan, dbs)
        .values()
        .filter_map(|o| {
            let host = o.db.copyright_path(o.pkg)?;
            Some((
                format!("/usr/share/doc/{}/copyright", o.pkg.name),
                (host, o.pkg.name.clone()),
            ))
        })
        .collect()
}
