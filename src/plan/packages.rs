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
    look_up_owners(plan, dbs);
    for (at, (src, package)) in copyright_sources(plan, dbs) {
        let at = ImagePath::new(&at).map_err(&fail)?;
        if !plan.entries.contains_key(&at) {
            let why = copyright_why(&package);
            plan.insert_implied(&at, file_item(src, why)?)
                .map_err(&fail)?;
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
            let why = os_release_why(dbs[0].owner(&real).map(|p| p.name.as_str()));
            plan.insert_implied(&os_release, file_item(real, why)?)
                .map_err(fail)?;
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

/// An error of this module, prefixed as its reasons are.
fn fail(m: String) -> Error {
    Error::msg(format!("{WHY}: {m}"))
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

/// Look up the owner of every regular file of the plan on all cores (a
/// stat for most, a path resolved for some), so that [`owners`] finds each
/// memoized in its database.
fn look_up_owners(plan: &Plan, dbs: &[DpkgDb]) {
    use rayon::prelude::*;
    let srcs: Vec<&Path> = plan
        .entries
        .values()
        .filter_map(|i| match &i.kind {
            ItemKind::File { src, .. } => Some(src.as_path()),
            _ => None,
        })
        .collect();
    srcs.par_iter().for_each(|src| {
        let _ = dbs.iter().find_map(|db| db.owner_entry(src));
    });
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

/// A small Debian root and a plan of its files, for the tests of this
/// module and of the SBOM.
#[cfg(test)]
pub(crate) mod fixture {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    use crate::plan::{Item, Plan};
    use crate::recipe::ImagePath;

    pub fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// A usr-merged Debian root with libc6 (amd64 and i386), libz (a
    /// DEP-5 copyright) and an unowned file.
    pub fn root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        symlink("usr/lib", r.join("lib")).unwrap();
        write(&r.join("usr/lib/x86_64-linux-gnu/libc.so.6"), b"libc amd64");
        write(&r.join("usr/lib/i386-linux-gnu/libc.so.6"), b"libc i386");
        write(&r.join("usr/lib/x86_64-linux-gnu/libz.so.1.3"), b"zlib");
        write(&r.join("usr/local/lib/mine.so"), b"mine");
        write(
            &r.join("var/lib/dpkg/status"),
            b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
              Source: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n more\n\n\
              Package: libc6\nStatus: install ok installed\nArchitecture: i386\n\
              Source: glibc\nVersion: 2.36-9+deb12u4\n\n\
              Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n\
              Source: zlib (1:1.3)\nVersion: 1:1.3+dfsg-1\nDepends: libc6 (>= 2.14)\n\
              Conffiles:\n /etc/z 00000000000000000000000000000000\n",
        );
        write(
            &r.join("var/lib/dpkg/info/libc6:amd64.list"),
            b"/lib/x86_64-linux-gnu/libc.so.6\n",
        );
        write(
            &r.join("var/lib/dpkg/info/libc6:i386.list"),
            b"/lib/i386-linux-gnu/libc.so.6\n",
        );
        write(
            &r.join("var/lib/dpkg/info/zlib1g:amd64.list"),
            b"/lib/x86_64-linux-gnu/libz.so.1.3\n",
        );
        write(
            &r.join("usr/share/doc/zlib1g/copyright"),
            b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
              Files: *\nLicense: Zlib\n\nFiles: contrib/*\nLicense: public-domain\n",
        );
        write(&r.join("etc/os-release"), b"ID=debian\nVERSION_ID=\"12\"\n");
        t
    }

    pub fn file(src: PathBuf) -> Item {
        let size = fs::metadata(&src).unwrap().len();
        Item::file(src, size, "test").with_mode(0o755).explicit()
    }

    pub fn plan(r: &Path, with_i386: bool) -> Plan {
        let mut plan = Plan::default();
        let mut add =
            |image: &str, item: Item| plan.insert(&ImagePath::new(image).unwrap(), item).unwrap();
        // The loader opens /lib/...; the plan keeps the image path it opens.
        add(
            "/lib/x86_64-linux-gnu/libc.so.6",
            file(r.join("usr/lib/x86_64-linux-gnu/libc.so.6")),
        );
        add(
            "/usr/lib/x86_64-linux-gnu/libz.so.1",
            file(r.join("usr/lib/x86_64-linux-gnu/libz.so.1.3")),
        );
        add("/opt/mine.so", file(r.join("usr/local/lib/mine.so")));
        add(
            "/etc/passwd",
            Item::data(&b"root:x:0:0::/:/sbin/nologin\n"[..], "generated"),
        );
        if with_i386 {
            add(
                "/lib/i386-linux-gnu/libc.so.6",
                file(r.join("usr/lib/i386-linux-gnu/libc.so.6")),
            );
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{plan, root, write};
    use super::*;
    use md5::Digest as _;

    fn md5_hex(b: &[u8]) -> String {
        hex(&md5::Md5::digest(b))
    }

    #[test]
    fn writes_status_d_for_owning_packages_only() {
        let t = root();
        let dbs = vec![DpkgDb::load(t.path()).unwrap().unwrap()];
        let meta = package_metadata(&plan(t.path(), false), &dbs).unwrap();
        let keys: Vec<_> = meta.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "/var/lib/dpkg/status.d/libc6",
                "/var/lib/dpkg/status.d/libc6.md5sums",
                "/var/lib/dpkg/status.d/zlib1g",
                "/var/lib/dpkg/status.d/zlib1g.md5sums",
            ]
        );
        assert_eq!(
            String::from_utf8_lossy(&meta["/var/lib/dpkg/status.d/zlib1g"]),
            "Package: zlib1g\nArchitecture: amd64\nSource: zlib (1:1.3)\n\
             Version: 1:1.3+dfsg-1\nDepends: libc6 (>= 2.14)\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&meta["/var/lib/dpkg/status.d/libc6.md5sums"]),
            format!(
                "{}  lib/x86_64-linux-gnu/libc.so.6\n",
                md5_hex(b"libc amd64")
            )
        );
        assert_eq!(
            String::from_utf8_lossy(&meta["/var/lib/dpkg/status.d/zlib1g.md5sums"]),
            format!("{}  usr/lib/x86_64-linux-gnu/libz.so.1\n", md5_hex(b"zlib"))
        );
        let copyrights = copyright_files(&plan(t.path(), false), &dbs);
        assert_eq!(
            copyrights.keys().collect::<Vec<_>>(),
            ["/usr/share/doc/zlib1g/copyright"]
        );
    }

    #[test]
    fn md5s_are_dpkgs_record_when_it_has_one() {
        let t = root();
        // dpkg's md5sums for zlib1g records its one file (as the package
        // lists it, through the /lib symlink); libc6 has none, so its
        // file is hashed.
        let recorded = "0123456789abcdef0123456789abcdef";
        write(
            &t.path().join("var/lib/dpkg/info/zlib1g:amd64.md5sums"),
            format!("{recorded}  lib/x86_64-linux-gnu/libz.so.1.3\n").as_bytes(),
        );
        let dbs = vec![DpkgDb::load(t.path()).unwrap().unwrap()];
        let meta = package_metadata(&plan(t.path(), false), &dbs).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&meta["/var/lib/dpkg/status.d/zlib1g.md5sums"]),
            format!("{recorded}  usr/lib/x86_64-linux-gnu/libz.so.1\n")
        );
        assert_eq!(
            String::from_utf8_lossy(&meta["/var/lib/dpkg/status.d/libc6.md5sums"]),
            format!(
                "{}  lib/x86_64-linux-gnu/libc.so.6\n",
                md5_hex(b"libc amd64")
            )
        );
    }

    #[test]
    fn two_architectures_get_qualified_names() {
        let t = root();
        let dbs = vec![DpkgDb::load(t.path()).unwrap().unwrap()];
        let meta = package_metadata(&plan(t.path(), true), &dbs).unwrap();
        assert!(meta.contains_key("/var/lib/dpkg/status.d/libc6:amd64"));
        assert!(meta.contains_key("/var/lib/dpkg/status.d/libc6:i386.md5sums"));
        assert!(meta.contains_key("/var/lib/dpkg/status.d/zlib1g"));
    }

    #[test]
    fn no_database_no_metadata() {
        let t = root();
        assert!(package_metadata(&plan(t.path(), false), &[])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn every_added_entry_names_its_package() {
        let t = root();
        let dbs = vec![DpkgDb::load(t.path()).unwrap().unwrap()];
        let mut p = plan(t.path(), false);
        add(&mut p, &dbs).unwrap();
        let why = |at: &str| p.entries[&ImagePath::new(at).unwrap()].why.clone();
        assert_eq!(
            why("/var/lib/dpkg/status.d/zlib1g"),
            "package metadata for scanners: the dpkg status of package zlib1g"
        );
        assert_eq!(
            why("/var/lib/dpkg/status.d/zlib1g.md5sums"),
            "package metadata for scanners: the file list (md5sums) of package zlib1g"
        );
        assert_eq!(
            why("/usr/share/doc/zlib1g/copyright"),
            "package metadata for scanners: the copyright file of package zlib1g"
        );
        // No package of this root owns its os-release.
        assert_eq!(
            why("/etc/os-release"),
            "package metadata for scanners: the distribution's os-release"
        );
    }
}
