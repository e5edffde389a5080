//! The Debian package database of a root (the host's `/` or a sysroot
//! directory): which installed package owns a file, with its control stanza
//! and its license from `/usr/share/doc/<package>/copyright`.
//!
//! Read from `var/lib/dpkg/status` with the file lists in
//! `var/lib/dpkg/info/<package>[:<arch>].list`, and from distroless-style
//! `var/lib/dpkg/status.d/<package>` stanzas with their
//! `<package>.md5sums` file lists. Paths are looked up inside the root as a
//! chroot would (absolute symlinks stay inside it), so usr-merged roots,
//! where dpkg lists `/lib/x86_64-linux-gnu/libc.so.6` and the file really is
//! `/usr/lib/x86_64-linux-gnu/libc.so.6`, work.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::error::{Error, IoResultExt, Result};
use crate::loader::sysroot::{self, Fs, HostFs, Node};
use crate::memo::Memo;

/// The status file, inside the root.
pub const STATUS: &str = "/var/lib/dpkg/status";
/// Distroless' one-stanza-per-package directory.
pub const STATUS_D: &str = "/var/lib/dpkg/status.d";
/// Where dpkg keeps each package's file list.
pub const INFO: &str = "/var/lib/dpkg/info";

/// Fields of a status stanza that describe this installation, not the
/// package; distroless' status.d stanzas (the packages' control files) have none.
const INSTALL_FIELDS: &[&str] = &["Status", "Conffiles", "Config-Version"];

/// An installed Debian package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The source package's name, when it differs from the binary's
    /// (the `Source:` field without its version).
    pub source: Option<String>,
    /// The control stanza as in the status file, without the Status,
    /// Conffiles and Config-Version fields; ends with a newline.
    pub stanza: String,
    /// An SPDX license expression ("GPL-2.0-or-later AND MIT") from the
    /// `License:` fields of a machine-readable (DEP-5) copyright file.
    pub license: Option<String>,
    /// Those `License:` names as Debian writes them, sorted, without duplicates.
    pub licenses: Vec<String>,
}

impl Package {
    /// A field of the stanza (name compared without case), continuation
    /// lines joined with "\n".
    pub fn field(&self, name: &str) -> Option<String> {
        parse_stanzas(&self.stanza)
            .into_iter()
            .next()?
            .into_iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }

    /// "libc6:amd64".
    pub fn qualified_name(&self) -> String {
        format!("{}:{}", self.name, self.architecture)
    }
}

/// The distribution of a root, from its os-release file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distro {
    /// `ID`: "debian", "ubuntu".
    pub id: String,
    /// `VERSION_ID`: "12"; absent on testing and unstable.
    pub version_id: Option<String>,
}

/// A package's licenses: an SPDX expression ("GPL-2.0-or-later AND MIT")
/// and the names Debian's copyright file uses, sorted.
pub type Licenses = (Option<String>, Vec<String>);

/// What [`DpkgDb::read_ahead`] read of a root before the image's file names
/// were known: the `info/*.list` files with an index of every listed path
/// by file name, and the status file's packages.
#[derive(Debug, Default)]
pub struct ReadAhead {
    /// List file stem ("libc6:amd64") → its index in `texts`; None for a
    /// list that could not be read here.
    stems: HashMap<String, Option<u32>>,
    /// Whether every list of the directory is in `stems` (so a stem that
    /// is not has no list).
    complete: bool,
    /// The lists' bytes.
    texts: Vec<Vec<u8>>,
    /// Every listed path as (hash of its file name, list, start, end of
    /// the line), in list order: the paths with given file names are
    /// found without scanning the lists' bytes again.
    index: Vec<(u64, u32, u32, u32)>,
    /// The status file's packages, when it was read and parsed here.
    status: Option<Vec<Package>>,
}

/// Each line of a `.list` file that is a listed path ("/." excepted), as
/// (start, end) offsets without the line break.
fn list_lines(text: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
    ends.filter_map(move |end| {
        let line = (
            start,
            end - usize::from(end > start && text[end - 1] == b'\r'),
        );
        start = end + 1;
        let bytes = text.get(line.0..line.1)?;
        (bytes.first() == Some(&b'/') && bytes != b"/.").then_some(line)
    })
}

/// The file name of a listed path (after its last `/`).
fn base_name(path: &[u8]) -> &[u8] {
    memchr::memrchr(b'/', path).map_or(path, |i| &path[i + 1..])
}

fn name_hash(name: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(name)
}

impl ReadAhead {
    /// Which lines of which lists name a file called one of `names`:
    /// list → (start, end) of each such line, in list order.
    fn select(&self, names: &HashSet<OsString>) -> HashMap<u32, Vec<(u32, u32)>> {
        use std::os::unix::ffi::OsStrExt;
        let hashes: rustc_hash::FxHashSet<u64> =
            names.iter().map(|n| name_hash(n.as_bytes())).collect();
        let mut out: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
        for &(h, list, start, end) in &self.index {
            if !hashes.contains(&h) {
                continue;
            }
            let line = &self.texts[list as usize][start as usize..end as usize];
            if names.contains(std::ffi::OsStr::from_bytes(base_name(line))) {
                out.entry(list).or_default().push((start, end));
            }
        }
        out
    }
}

/// The dpkg database of one root.
#[derive(Debug)]
pub struct DpkgDb {
    root: PathBuf,
    /// The root as an absolute path, and with its own symlinks resolved.
    root_abs: PathBuf,
    root_canon: PathBuf,
    fs: HostFs,
    /// Sorted by (name, architecture, version).
    packages: Vec<Package>,
    /// Per package: where its md5sums may be (in the root), in order.
    md5sums: Vec<Vec<PathBuf>>,
    /// File name → (package index, path as dpkg lists it).
    files: FxHashMap<OsString, Vec<(usize, PathBuf)>>,
    /// Path as dpkg lists it → package index (the first, in package order).
    listed: FxHashMap<OsString, usize>,
    distro: Option<Distro>,
    /// Listed directory → its real path inside the root (None: not a directory).
    dirs: Memo<PathBuf, Option<PathBuf>>,
    /// Host file → (owning package index, path as dpkg lists it), as found.
    owners: Memo<PathBuf, Option<(usize, PathBuf)>>,
    /// Package name → licenses read from its copyright file, as read.
    licenses: Memo<String, Licenses>,
    /// Host directory → the names in it that are symlinks (None: it could
    /// not be listed), read once: a file whose name no package lists has an
    /// owner only if it is a symlink, and a big tree is not stat'ed file by
    /// file to learn that.
    links_in: std::sync::Mutex<FxHashMap<OsString, Option<rustc_hash::FxHashSet<OsString>>>>,
}

impl DpkgDb {
    /// Read the dpkg database of `root`. None when the root has neither a
    /// status file nor a status.d directory (a tree unpacked with `dpkg -x`).
    pub fn load(root: &Path) -> Result<Option<DpkgDb>> {
        DpkgDb::load_with(root, None, None)
    }

    /// Read every `info/*.list` file of `root` now, index the listed paths
    /// by file name, and parse the status file: a full system has hundreds
    /// of lists, and the build reads them on another thread while it
    /// resolves closures. Best effort: what is not read here is read by
    /// [`DpkgDb::load_with`], which reports any error.
    pub fn read_ahead(root: &Path) -> ReadAhead {
        let mut ahead = ReadAhead::default();
        let Ok(canon) = fs::canonicalize(root) else {
            return ahead;
        };
        let hfs = HostFs::new(canon);
        if let Ok(Some(text)) = read_in_root(&hfs, Path::new(STATUS)) {
            let text = String::from_utf8_lossy(&text);
            ahead.status = Some(packages_in(&text));
        }
        let Ok(r) = sysroot::resolve(&hfs, Path::new(INFO)) else {
            return ahead;
        };
        let dir = hfs.host_path(&r.real);
        let Ok(entries) = fs::read_dir(&dir) else {
            return ahead;
        };
        ahead.complete = true;
        for e in entries {
            let Ok(e) = e else {
                ahead.complete = false;
                break;
            };
            let name = e.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".list")) else {
                continue;
            };
            // Anything but a regular file read whole (offsets are u32) is
            // left to load_with.
            let read = e
                .file_type()
                .is_ok_and(|t| t.is_file())
                .then(|| fs::read(e.path()).ok())
                .flatten()
                .filter(|b| u32::try_from(b.len()).is_ok());
            let list = match (read, u32::try_from(ahead.texts.len())) {
                (Some(bytes), Ok(list)) => {
                    for (start, end) in list_lines(&bytes) {
                        let h = name_hash(base_name(&bytes[start..end]));
                        ahead.index.push((h, list, start as u32, end as u32));
                    }
                    ahead.texts.push(bytes);
                    Some(list)
                }
                _ => None,
            };
            ahead.stems.insert(stem.to_string(), list);
        }
        ahead
    }

    /// [`DpkgDb::load`], indexing only the listed files whose file name is
    /// in `names` (when given): [`DpkgDb::owner`] then finds nothing for
    /// other files. A full system lists over a hundred thousand paths; an
    /// image needs a few thousand. `ahead` is what was read ahead
    /// ([`DpkgDb::read_ahead`]) of the same root, if anything.
    pub fn load_with(
        root: &Path,
        names: Option<&HashSet<OsString>>,
        ahead: Option<&ReadAhead>,
    ) -> Result<Option<DpkgDb>> {
        let (root_abs, root_canon) = root_paths(root)?;
        let hfs = HostFs::new(root_canon.clone());

        let status = status_file(&hfs, ahead)?;
        let status_d = status_d_dir(&hfs)?;
        if status.is_none() && status_d.is_none() {
            return Ok(None);
        }
        // (package, its status.d md5sums file if any) before reading lists.
        let mut stanzas: Vec<(Package, Option<PathBuf>)> = status_packages(status)
            .into_iter()
            .map(|pkg| (pkg, None))
            .collect();
        if let Some(dir) = status_d {
            stanzas.extend(status_d_packages(&hfs, &dir)?);
        }
        let found = file_lists(&hfs, stanzas, names, ahead)?;
        let index = PackageIndex::new(found);
        let distro = os_release(&hfs)?;
        Ok(Some(DpkgDb {
            owners: Memo::default(),
            root: root.to_path_buf(),
            root_abs,
            root_canon,
            fs: hfs,
            packages: index.packages,
            md5sums: index.md5sums,
            files: index.files,
            listed: index.listed,
            distro,
            dirs: Memo::default(),
            licenses: Memo::default(),
            links_in: Default::default(),
        }))
    }

    /// The root as given to [`DpkgDb::load`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every installed package, sorted by name, architecture and version.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// The root's distribution, when it has an os-release file.
    pub fn distro(&self) -> Option<&Distro> {
        self.distro.as_ref()
    }

    /// The installed package that owns the regular file at `host_file` (a
    /// real host path, under this root), if any. Paths dpkg lists are
    /// compared after resolving their directories inside the root, so a
    /// file listed under `/lib` is found at `/usr/lib` in a usr-merged root.
    pub fn owner(&self, host_file: &Path) -> Option<&Package> {
        self.owner_entry(host_file).map(|(pkg, _)| pkg)
    }

    /// [`DpkgDb::owner`], with the path as the package lists it (inside
    /// the root; `/lib/…` for a file that really is `/usr/lib/…`).
    pub fn owner_entry(&self, host_file: &Path) -> Option<(&Package, PathBuf)> {
        // Most files of a big tree have a name no package lists: only a
        // symlink (whose target may be listed) is worth resolving then,
        // and nothing is memoized for them.
        let unlisted_name = host_file
            .file_name()
            .is_some_and(|n| !self.files.contains_key(n));
        if unlisted_name && !self.is_symlink(host_file) {
            return None;
        }
        self.owners
            .get_or(host_file, || self.find_owner(host_file))
            .map(|(i, listed)| (&self.packages[i], listed))
    }

    /// The MD5s dpkg recorded for a package's files (its md5sums file:
    /// `info/<package>.md5sums`, or `status.d/<package>.md5sums`), by path
    /// as listed; empty when it has none.
    pub fn md5sums(&self, pkg: &Package) -> Result<HashMap<PathBuf, [u8; 16]>> {
        let Some(i) = self.packages.iter().position(|p| p == pkg) else {
            return Ok(HashMap::new());
        };
        for path in &self.md5sums[i] {
            let Some(text) = read_in_root(&self.fs, path)? else {
                continue;
            };
            return Ok(md5sums_lines(&text)
                .filter_map(|(sum, p)| {
                    let md5 = crate::digest::unhex::<16>(std::str::from_utf8(sum).ok()?)?;
                    Some((p, md5))
                })
                .collect());
        }
        Ok(HashMap::new())
    }

    /// Whether the host file at `host_file` is a symlink, from the listing
    /// of its directory (read once per directory), else from an lstat.
    fn is_symlink(&self, host_file: &Path) -> bool {
        let lstat = || fs::symlink_metadata(host_file).is_ok_and(|m| m.is_symlink());
        let (Some(dir), Some(name)) = (host_file.parent(), host_file.file_name()) else {
            return lstat();
        };
        let links = || self.links_in.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = links().get(dir.as_os_str()) {
            return match known {
                Some(names) => names.contains(name),
                None => lstat(),
            };
        }
        // Listed without the lock held; every entry read, or none trusted.
        let listed: Option<rustc_hash::FxHashSet<OsString>> =
            fs::read_dir(dir).ok().and_then(|rd| {
                let mut names = rustc_hash::FxHashSet::default();
                for e in rd {
                    let e = e.ok()?;
                    if e.file_type().ok()?.is_symlink() {
                        names.insert(e.file_name());
                    }
                }
                Some(names)
            });
        let answer = match &listed {
            Some(names) => names.contains(name),
            None => lstat(),
        };
        links().insert(dir.as_os_str().to_owned(), listed);
        answer
    }

    fn find_owner(&self, host_file: &Path) -> Option<(usize, PathBuf)> {
        let real = self.in_root(host_file)?;
        let name = real.file_name()?;
        let dir = real.parent()?;
        // Fast path: a listed path that is already the real one (no
        // symlink to resolve), e.g. one of the many __init__.py files.
        if let Some(i) = self.listed.get(real.as_os_str()) {
            return Some((*i, real));
        }
        let candidates = self.files.get(name)?;
        for (i, listed) in candidates {
            let Some(listed_dir) = listed.parent() else {
                continue;
            };
            // The file's own path has no symlink in it, so the listed
            // path names it exactly when their directories are the same.
            if self.real_dir(listed_dir).as_deref() == Some(dir) {
                return Some((*i, listed.clone()));
            }
        }
        None
    }

    /// A package's licenses (SPDX expression, Debian names): as loaded, or
    /// read from its copyright file (once).
    pub fn licenses(&self, pkg: &Package) -> Licenses {
        if pkg.license.is_some() || !pkg.licenses.is_empty() {
            return (pkg.license.clone(), pkg.licenses.clone());
        }
        self.licenses.get_or(pkg.name.as_str(), || {
            copyright_licenses(&self.fs, &pkg.name).unwrap_or((None, Vec::new()))
        })
    }

    /// The host path of a package's `/usr/share/doc/<name>/copyright` in
    /// this root (symlinks resolved inside it), when it is a regular file.
    pub fn copyright_path(&self, pkg: &Package) -> Option<PathBuf> {
        if pkg.name.contains('/') {
            return None;
        }
        let path = Path::new("/usr/share/doc")
            .join(&pkg.name)
            .join("copyright");
        let r = sysroot::resolve(&self.fs, &path).ok()?;
        matches!(r.node, Node::File { .. }).then(|| self.fs.host_path(&r.real))
    }

    /// The real path inside the root of a regular file given by host path.
    fn in_root(&self, host_file: &Path) -> Option<PathBuf> {
        let abs = sysroot::normalize(&std::path::absolute(host_file).ok()?);
        let rel = match abs
            .strip_prefix(&self.root_abs)
            .or_else(|_| abs.strip_prefix(&self.root_canon))
        {
            Ok(rel) => rel.to_path_buf(),
            Err(_) => {
                let canon = fs::canonicalize(&abs).ok()?;
                canon.strip_prefix(&self.root_canon).ok()?.to_path_buf()
            }
        };
        let path = Path::new("/").join(rel);
        // The directory resolved once (memoized), then the file itself.
        let (dir, name) = (path.parent()?, path.file_name()?);
        let real_dir = self.real_dir(dir)?;
        let real = real_dir.join(name);
        match self.fs.lstat(&real).ok()? {
            Node::File { .. } => Some(real),
            Node::Symlink => {
                let r = sysroot::resolve(&self.fs, &real).ok()?;
                matches!(r.node, Node::File { .. }).then_some(r.real)
            }
            _ => None,
        }
    }

    /// A directory's real path inside the root (None: not a directory),
    /// resolved once per directory.
    fn real_dir(&self, dir: &Path) -> Option<PathBuf> {
        self.dirs
            .get_or(dir, || match sysroot::resolve(&self.fs, dir) {
                Ok(r) if r.node == Node::Dir => Some(r.real),
                _ => None,
            })
    }
}

/// Is this error a path that does not exist (or runs through a non-directory)?
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A file's bytes, resolved inside the root; None when it does not exist.
fn read_in_root(fs: &HostFs, path: &Path) -> Result<Option<Vec<u8>>> {
    let host = fs.host_path(path);
    let r = match sysroot::resolve(fs, path) {
        Ok(r) => r,
        Err(e) if is_absent(&e) => return Ok(None),
        Err(e) => return Err(Error::io("read", host, e)),
    };
    if !matches!(r.node, Node::File { .. }) {
        return Ok(None);
    }
    let real = fs.host_path(&r.real);
    std::fs::read(&real).with_path("read", &real).map(Some)
}

/// Is a listed path wanted (its file name in `names`, or no filter)?
fn wanted(path: &[u8], names: Option<&HashSet<OsString>>) -> bool {
    use std::os::unix::ffi::OsStrExt;
    names.is_none_or(|n| n.contains(std::ffi::OsStr::from_bytes(base_name(path))))
}

/// The lines of an md5sums file ("<md5>  <path without leading slash>"),
/// as (md5 text, absolute path); paths are bytes, as dpkg wrote them.
fn md5sums_lines(text: &[u8]) -> impl Iterator<Item = (&[u8], PathBuf)> {
    use std::os::unix::ffi::OsStrExt;
    text.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let cut = line.iter().position(u8::is_ascii_whitespace)?;
        let (sum, rest) = line.split_at(cut);
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        let p = &rest[start..];
        Some((sum, Path::new("/").join(std::ffi::OsStr::from_bytes(p))))
    })
}

/// The status file's packages: parsed ahead, or its text to parse.
enum Status<'a> {
    Parsed(&'a [Package]),
    Text(Vec<u8>),
}

/// The read-ahead lists with the lines [`ReadAhead::select`] found for the
/// wanted names (None: every line is wanted).
#[derive(Clone, Copy)]
struct Lists<'a> {
    ahead: &'a ReadAhead,
    selected: Option<&'a HashMap<u32, Vec<(u32, u32)>>>,
}

impl Lists<'_> {
    /// The wanted paths of the list with this stem, or whether the root
    /// surely has no such list.
    fn paths(&self, stem: &str) -> Listed {
        use std::os::unix::ffi::OsStrExt;
        let list = match self.ahead.stems.get(stem) {
            Some(Some(list)) => *list,
            Some(None) => return Listed::Unknown,
            None if self.ahead.complete => return Listed::Absent,
            None => return Listed::Unknown,
        };
        let text = &self.ahead.texts[list as usize];
        let path = |(start, end): (usize, usize)| {
            PathBuf::from(std::ffi::OsStr::from_bytes(&text[start..end]))
        };
        Listed::Paths(match self.selected {
            Some(sel) => sel.get(&list).map_or_else(Vec::new, |lines| {
                lines
                    .iter()
                    .map(|&(s, e)| path((s as usize, e as usize)))
                    .collect()
            }),
            None => list_lines(text).map(path).collect(),
        })
    }
}

/// A package's list as read ahead.
enum Listed {
    Paths(Vec<PathBuf>),
    /// The root has no list of that name.
    Absent,
    /// Not read ahead: read it now.
    Unknown,
}

/// Check that `root` is a directory; return it as an absolute path and
/// with its own symlinks resolved.
fn root_paths(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let meta = fs::metadata(root).with_path("open dpkg root", root)?;
    if !meta.is_dir() {
        return Err(Error::msg(format!(
            "open dpkg root {}: not a directory",
            root.display()
        )));
    }
    let root_abs =
        sysroot::normalize(&std::path::absolute(root).with_path("resolve dpkg root", root)?);
    let root_canon = fs::canonicalize(root).with_path("resolve dpkg root", root)?;
    Ok((root_abs, root_canon))
}

/// The status file's packages as read ahead, else its text (None: the
/// root has no status file).
fn status_file<'a>(fs: &HostFs, ahead: Option<&'a ReadAhead>) -> Result<Option<Status<'a>>> {
    Ok(match ahead.and_then(|a| a.status.as_ref()) {
        Some(packages) => Some(Status::Parsed(packages)),
        None => read_in_root(fs, Path::new(STATUS))?.map(Status::Text),
    })
}

/// The real path of the status.d directory, if the root has one.
fn status_d_dir(fs: &HostFs) -> Result<Option<PathBuf>> {
    match sysroot::resolve(fs, Path::new(STATUS_D)) {
        Ok(r) if r.node == Node::Dir => Ok(Some(r.real)),
        Ok(_) => Ok(None),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(Error::io("read", fs.host_path(Path::new(STATUS_D)), e)),
    }
}

/// The status file's packages, in file order.
fn status_packages(status: Option<Status>) -> Vec<Package> {
    use rayon::prelude::*;
    match status {
        Some(Status::Parsed(packages)) => packages.to_vec(),
        Some(Status::Text(text)) => {
            // A status file has a stanza per package (hundreds of KB):
            // split cheaply, then parse the stanzas in parallel, in order.
            let text = String::from_utf8_lossy(&text);
            stanza_texts(&text)
                .par_iter()
                .flat_map_iter(|t| packages_in(t))
                .collect()
        }
        None => Vec::new(),
    }
}

/// The packages of the status.d directory `dir` (real), by file name, each
/// with where its md5sums file is.
fn status_d_packages(fs: &HostFs, dir: &Path) -> Result<Vec<(Package, Option<PathBuf>)>> {
    let mut out = Vec::new();
    let mut entries = fs.read_dir(dir).with_path("read", fs.host_path(dir))?;
    entries.sort();
    for name in entries {
        if name.starts_with('.') || name.ends_with(".md5sums") {
            continue;
        }
        let path = dir.join(&name);
        let Some(text) = read_in_root(fs, &path)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        for pkg in packages_in(&text) {
            out.push((pkg, Some(dir.join(format!("{name}.md5sums")))));
        }
    }
    Ok(out)
}

/// A package with the paths it lists (only those `names` wants) and
/// where its md5sums may be (in the root), in order.
type Found = (Package, Vec<PathBuf>, Vec<PathBuf>);

/// Every package's file list, read in parallel from its status.d md5sums
/// file and the info directory (resolved once); sorted by (name,
/// architecture, version).
fn file_lists(
    fs: &HostFs,
    stanzas: Vec<(Package, Option<PathBuf>)>,
    names: Option<&HashSet<OsString>>,
    ahead: Option<&ReadAhead>,
) -> Result<Vec<Found>> {
    use rayon::prelude::*;
    let info_dir = match sysroot::resolve(fs, Path::new(INFO)) {
        Ok(r) if r.node == Node::Dir => Some(r.real),
        _ => None,
    };
    // The read-ahead lines naming wanted files, by list.
    let selected = match (ahead, names) {
        (Some(a), Some(n)) => Some(a.select(n)),
        _ => None,
    };
    let lists = ahead.map(|a| Lists {
        ahead: a,
        selected: selected.as_ref(),
    });
    let mut found: Vec<Found> = stanzas
        .into_par_iter()
        .map(|(pkg, status_d_sums)| {
            let mut files = Vec::new();
            let mut sums = Vec::new();
            if let Some(p) = status_d_sums {
                files = md5sums_list(fs, &p, names)?;
                sums.push(p);
            }
            if let Some(dir) = &info_dir {
                files.extend(info_list(fs, dir, &pkg, names, lists.as_ref())?);
            }
            for n in [pkg.qualified_name(), pkg.name.clone()] {
                sums.push(Path::new(INFO).join(format!("{n}.md5sums")));
            }
            Ok((pkg, files, sums))
        })
        .collect::<Result<_>>()?;
    // Licenses are read later, only for the packages an image uses
    // (`load_licenses`): a full system has hundreds of copyright files.
    found.sort_by(|(a, ..), (b, ..)| {
        (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
    });
    Ok(found)
}

/// The packages in order, with the [`DpkgDb`] indexes of their files.
struct PackageIndex {
    packages: Vec<Package>,
    md5sums: Vec<Vec<PathBuf>>,
    files: FxHashMap<OsString, Vec<(usize, PathBuf)>>,
    listed: FxHashMap<OsString, usize>,
}

impl PackageIndex {
    /// Index the sorted packages' listed paths by file name and by path.
    fn new(found: Vec<Found>) -> PackageIndex {
        let mut packages = Vec::with_capacity(found.len());
        let mut md5sums = Vec::with_capacity(found.len());
        let mut files: FxHashMap<OsString, Vec<(usize, PathBuf)>> = FxHashMap::default();
        let mut listed: FxHashMap<OsString, usize> = FxHashMap::default();
        for (i, (pkg, paths, sums)) in found.into_iter().enumerate() {
            packages.push(pkg);
            md5sums.push(sums);
            for path in paths {
                listed.entry(path.clone().into_os_string()).or_insert(i);
                if let Some(name) = path.file_name() {
                    files
                        .entry(name.to_os_string())
                        .or_default()
                        .push((i, path));
                }
            }
        }
        PackageIndex {
            packages,
            md5sums,
            files,
            listed,
        }
    }
}

/// The files dpkg lists for a package in info/ (`dir`, real), if it has a
/// list (only those `names` wants).
fn info_list(
    fs: &HostFs,
    dir: &Path,
    pkg: &Package,
    names: Option<&HashSet<OsString>>,
    lists: Option<&Lists>,
) -> Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    for name in [pkg.qualified_name(), pkg.name.clone()] {
        match lists.map_or(Listed::Unknown, |l| l.paths(&name)) {
            Listed::Paths(paths) => return Ok(paths),
            Listed::Absent => continue,
            Listed::Unknown => {}
        }
        if let Some(text) = read_in_dir(fs, dir, &format!("{name}.list"))? {
            return Ok(list_lines(&text)
                .map(|(s, e)| &text[s..e])
                .filter(|l| wanted(l, names))
                .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
                .collect());
        }
    }
    Ok(Vec::new())
}

/// A file `name` of the real directory `dir` in the root; None when it
/// does not exist. Opened without following a symlink (a symlink is
/// resolved inside the root instead).
fn read_in_dir(fs: &HostFs, dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let host = fs.host_path(&path);
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&host);
    match opened {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut f, &mut bytes).with_path("read", &host)?;
            Ok(Some(bytes))
        }
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => read_in_root(fs, &path),
        Err(e) => Err(Error::io("read", host, e)),
    }
}

/// The files of an md5sums file ("<md5>  <path without leading slash>"),
/// only those `names` wants.
fn md5sums_list(
    fs: &HostFs,
    path: &Path,
    names: Option<&HashSet<OsString>>,
) -> Result<Vec<PathBuf>> {
    let Some(text) = read_in_root(fs, path)? else {
        return Ok(Vec::new());
    };
    use std::os::unix::ffi::OsStrExt;
    Ok(md5sums_lines(&text)
        .map(|(_, p)| p)
        .filter(|p| wanted(p.as_os_str().as_bytes(), names))
        .collect())
}

/// One field of a control stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The value: the rest of the first line, trimmed, then each
    /// continuation line (with its leading space) after a "\n".
    pub value: String,
    /// The field's lines exactly as written, each ending with "\n".
    pub raw: String,
}

/// Split deb822 text (a status file, a control file) into stanzas of
/// fields. Blank lines separate stanzas; `#` lines are comments; a line that
/// starts with a space or tab continues the previous field.
pub fn parse_stanzas(text: &str) -> Vec<Vec<Field>> {
    let mut stanzas = Vec::new();
    let mut current: Vec<Field> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(f) = current.last_mut() {
                f.value.push('\n');
                f.value.push_str(line);
                f.raw.push_str(line);
                f.raw.push('\n');
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        current.push(Field {
            name: name.trim().to_string(),
            value: value.trim().to_string(),
            raw: format!("{line}\n"),
        });
    }
    if !current.is_empty() {
        stanzas.push(current);
    }
    stanzas
}

/// `text` cut at its blank lines (what [`parse_stanzas`] splits on), as
/// slices: each holds whole stanzas.
fn stanza_texts(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        at += line.len();
        if line.trim().is_empty() {
            if at > start {
                out.push(&text[start..at]);
            }
            start = at;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The packages of deb822 status text whose files are on disk: what
/// [`parse_stanzas`] reads, scanned in one pass without a string per
/// field (a full system's status file has thousands of stanzas).
fn packages_in(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut stanza = StanzaScan::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            out.extend(std::mem::take(&mut stanza).package());
        } else {
            stanza.line(line);
        }
    }
    out.extend(stanza.package());
    out
}

/// The fields of a stanza a [`Package`] needs, as [`packages_in`] scans it.
#[derive(Default)]
struct StanzaScan {
    /// Whether the stanza has a field yet.
    any: bool,
    /// Status, Package, Version, Architecture and Source (the first of
    /// each name, continuation lines joined with "\n").
    values: [Option<String>; 5],
    /// Which of `values` the field being read is; None for another field
    /// or a second one of the same name.
    current: Option<usize>,
    /// Whether the field being read describes the installation (left
    /// out of the stanza text).
    install: bool,
    /// The stanza without its installation fields, line by line.
    text: String,
}

impl StanzaScan {
    const NAMES: [&'static str; 5] = ["Status", "Package", "Version", "Architecture", "Source"];

    fn line(&mut self, line: &str) {
        if line.starts_with('#') {
            return;
        }
        if line.starts_with([' ', '\t']) {
            if !self.any {
                return;
            }
            if let Some(v) = self.current.and_then(|i| self.values[i].as_mut()) {
                v.push('\n');
                v.push_str(line);
            }
        } else {
            let Some((name, value)) = line.split_once(':') else {
                return;
            };
            let name = name.trim();
            self.any = true;
            self.install = INSTALL_FIELDS.iter().any(|x| name.eq_ignore_ascii_case(x));
            self.current = Self::NAMES
                .iter()
                .position(|x| name.eq_ignore_ascii_case(x))
                .filter(|&i| self.values[i].is_none());
            if let Some(i) = self.current {
                self.values[i] = Some(value.trim().to_string());
            }
        }
        if !self.install {
            self.text.push_str(line);
            self.text.push('\n');
        }
    }

    /// The package, when the stanza names one whose files are on disk.
    fn package(self) -> Option<Package> {
        let [status, name, version, architecture, source] = self.values;
        // "want flag status": only installed-ish states have files.
        // status.d stanzas have no Status field and are installed.
        if let Some(status) = status {
            let state = status.split_whitespace().nth(2).unwrap_or("");
            if matches!(state, "not-installed" | "config-files" | "") {
                return None;
            }
        }
        let name = name.filter(|n| !n.is_empty())?;
        let version = version.filter(|v| !v.is_empty())?;
        let source = source
            .as_deref()
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| *s != name)
            .map(str::to_string);
        Some(Package {
            name,
            version,
            architecture: architecture.unwrap_or_default(),
            source,
            stanza: self.text,
            license: None,
            licenses: Vec::new(),
        })
    }
}

/// The root's os-release (`/etc/os-release`, else `/usr/lib/os-release`).
fn os_release(fs: &HostFs) -> Result<Option<Distro>> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        let Some(text) = read_in_root(fs, Path::new(path))? else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let mut id = None;
        let mut version_id = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            match k.trim() {
                "ID" => id = Some(v),
                "VERSION_ID" => version_id = Some(v),
                _ => {}
            }
        }
        return Ok(id.filter(|i| !i.is_empty()).map(|id| Distro {
            id,
            version_id: version_id.filter(|v| !v.is_empty()),
        }));
    }
    Ok(None)
}

/// (SPDX expression, Debian names) from the package's copyright file, when
/// it is machine-readable: a first paragraph with a `Format:` field.
fn copyright_licenses(fs: &HostFs, package: &str) -> Result<(Option<String>, Vec<String>)> {
    if package.contains('/') {
        return Ok((None, Vec::new()));
    }
    let path = Path::new("/usr/share/doc").join(package).join("copyright");
    let Some(text) = read_in_root(fs, &path)? else {
        return Ok((None, Vec::new()));
    };
    let text = String::from_utf8_lossy(&text);
    let names = dep5_licenses(&text);
    if names.is_empty() {
        return Ok((None, Vec::new()));
    }
    let ids: BTreeSet<String> = names.iter().map(|n| spdx_license_id(n)).collect();
    let expr = ids.into_iter().collect::<Vec<_>>().join(" AND ");
    Ok((Some(expr), names))
}

/// The license names of a DEP-5 copyright file's `License:` fields (first
/// lines only), split at "or", "and", "and/or" and commas, without "with
/// ... exception" clauses; empty when the file is not machine-readable.
pub fn dep5_licenses(text: &str) -> Vec<String> {
    // A line scan, not parse_stanzas: this runs over every package's
    // copyright file (tens of megabytes on a full system).
    let field = |line: &str, name: &str| -> Option<String> {
        let (f, v) = line.split_once(':')?;
        f.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    };
    let mut lines = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip_while(|l| l.trim().is_empty());
    let machine_readable = lines
        .by_ref()
        .take_while(|l| !l.trim().is_empty())
        .any(|l| field(l, "Format").is_some());
    if !machine_readable {
        return Vec::new();
    }
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let Some(first) = field(line, "License") else {
            continue;
        };
        let mut skipping = false;
        for token in first.split_whitespace() {
            let comma = token.ends_with(',');
            let word = token.trim_end_matches(',');
            match word.to_ascii_lowercase().as_str() {
                "or" | "and" | "and/or" | "" => skipping = false,
                "with" => skipping = true,
                _ if !skipping => {
                    names.insert(word.to_string());
                }
                _ => {}
            }
            if comma {
                skipping = false;
            }
        }
    }
    names.into_iter().collect()
}

/// The SPDX identifier for a Debian license short name: "GPL-2+" →
/// "GPL-2.0-or-later", "Expat" → "MIT", "BSD-3-clause" → "BSD-3-Clause";
/// names SPDX does not know become "LicenseRef-<name>".
pub fn spdx_license_id(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if let Some(id) = gnu_license(&lower) {
        return id;
    }
    if let Some((_, id)) = KNOWN_LICENSES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(&lower))
    {
        return id.to_string();
    }
    if let Some(id) = KNOWN_LICENSES
        .iter()
        .map(|(_, id)| id)
        .find(|id| id.eq_ignore_ascii_case(&lower))
    {
        return id.to_string();
    }
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("LicenseRef-{}", clean.trim_matches('-'))
}

/// GPL, LGPL, AGPL and GFDL in Debian's or SPDX's spelling, with "+",
/// "-or-later" or "-only".
fn gnu_license(lower: &str) -> Option<String> {
    let (family, rest) = ["agpl-", "lgpl-", "gpl-", "gfdl-"]
        .iter()
        .find_map(|f| lower.strip_prefix(f).map(|r| (*f, r)))?;
    let (version, later) = if let Some(v) = rest.strip_suffix('+') {
        (v, true)
    } else if let Some(v) = rest.strip_suffix("-or-later") {
        (v, true)
    } else if let Some(v) = rest.strip_suffix("-only") {
        (v, false)
    } else {
        (rest, false)
    };
    let version = if version.contains('.') {
        version.to_string()
    } else {
        format!("{version}.0")
    };
    let valid: &[&str] = match family {
        "gpl-" => &["1.0", "2.0", "3.0"],
        "lgpl-" => &["2.0", "2.1", "3.0"],
        "agpl-" => &["1.0", "3.0"],
        _ => &["1.1", "1.2", "1.3"],
    };
    if !valid.contains(&version.as_str()) {
        return None;
    }
    let family = family.trim_end_matches('-').to_ascii_uppercase();
    let suffix = if later { "or-later" } else { "only" };
    Some(format!("{family}-{version}-{suffix}"))
}

/// (Debian short name or SPDX id in any case, SPDX id).
const KNOWN_LICENSES: &[(&str, &str)] = &[
    ("expat", "MIT"),
    ("mit", "MIT"),
    ("mit-0", "MIT-0"),
    ("bsd-2-clause", "BSD-2-Clause"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("bsd-4-clause", "BSD-4-Clause"),
    ("0bsd", "0BSD"),
    ("isc", "ISC"),
    ("zlib", "Zlib"),
    ("apache-2", "Apache-2.0"),
    ("apache-2.0", "Apache-2.0"),
    ("apache-1.1", "Apache-1.1"),
    ("apache-1.0", "Apache-1.0"),
    ("mpl-1.1", "MPL-1.1"),
    ("mpl-2.0", "MPL-2.0"),
    ("mpl-2", "MPL-2.0"),
    ("artistic", "Artistic-1.0-Perl"),
    ("artistic-1.0", "Artistic-1.0"),
    ("artistic-2.0", "Artistic-2.0"),
    ("artistic-2", "Artistic-2.0"),
    ("psf-2", "PSF-2.0"),
    ("psf-2.0", "PSF-2.0"),
    ("python-2.0", "Python-2.0"),
    ("cc0", "CC0-1.0"),
    ("cc0-1.0", "CC0-1.0"),
    ("cc-by-3.0", "CC-BY-3.0"),
    ("cc-by-4.0", "CC-BY-4.0"),
    ("cc-by-sa-3.0", "CC-BY-SA-3.0"),
    ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
    ("openssl", "OpenSSL"),
    ("ssleay", "SSLeay-standalone"),
    ("curl", "curl"),
    ("x11", "X11"),
    ("ftl", "FTL"),
    ("bsl-1.0", "BSL-1.0"),
    ("boost-1.0", "BSL-1.0"),
    ("unicode-dfs-2016", "Unicode-DFS-2016"),
    ("unicode-3.0", "Unicode-3.0"),
    ("unlicense", "Unlicense"),
    ("wtfpl", "WTFPL"),
    ("bzip2-1.0.6", "bzip2-1.0.6"),
    ("libpng", "Libpng"),
    ("libpng-2.0", "libpng-2.0"),
    ("ijg", "IJG"),
    ("ofl-1.1", "OFL-1.1"),
    ("ruby", "Ruby"),
    ("php-3.01", "PHP-3.01"),
    ("epl-1.0", "EPL-1.0"),
    ("epl-2.0", "EPL-2.0"),
    ("cddl-1.0", "CDDL-1.0"),
    ("sleepycat", "Sleepycat"),
    ("icu", "ICU"),
    ("ntp", "NTP"),
    ("tcl", "TCL"),
    ("vim", "Vim"),
    ("w3c", "W3C"),
    ("info-zip", "Info-ZIP"),
    ("beerware", "Beerware"),
    (
        "gpl-2.0-with-classpath-exception",
        "GPL-2.0-with-classpath-exception",
    ),
    ("lgpl-2.1-with-exceptions", "LGPL-2.1-or-later"),
    ("hpnd", "HPND"),
    ("mit-cmu", "MIT-CMU"),
    (
        "x11-distribute-modifications-variant",
        "X11-distribute-modifications-variant",
    ),
    ("bsd-2-clause-netbsd", "BSD-2-Clause"),
    ("bsd-3-clause-clear", "BSD-3-Clause-Clear"),
    ("ecl-2.0", "ECL-2.0"),
    ("eupl-1.2", "EUPL-1.2"),
    ("gd", "GD"),
    ("imagemagick", "ImageMagick"),
    ("mit-open-group", "MIT-open-group"),
    ("ncsa", "NCSA"),
    ("postgresql", "PostgreSQL"),
    ("qhull", "Qhull"),
    ("rsa-md", "RSA-MD"),
    ("spencer-86", "Spencer-86"),
    ("spencer-94", "Spencer-94"),
    ("zpl-2.1", "ZPL-2.1"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const STATUS_TEXT: &str = "\
Package: libfoo1
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 10
Maintainer: Someone <someone@example.org>
Architecture: amd64
Multi-Arch: same
Source: foo (1.2-1)
Version: 1.2-1+b1
Depends: libc6 (>= 2.34)
Description: the foo library
 It does foo.
 .
 And bar.

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 0.1
Conffiles:
 /etc/gone.conf 0123456789abcdef0123456789abcdef

Package: tool
Status: install ok installed
Architecture: amd64
Version: 2:3.0~rc1-1
Conffiles:
 /etc/tool.conf 0123456789abcdef0123456789abcdef obsolete
Config-Version: 2:3.0~rc1-1
Description: a tool
";

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A usr-merged root whose /lib is an absolute symlink (resolved
    /// inside the root, never to the host's /usr/lib).
    fn debian_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(&r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1.2"), "foo");
        symlink(
            "libfoo.so.1.2",
            r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1"),
        )
        .unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        write(&r.join("usr/bin/tool"), "tool");
        write(&r.join("usr/bin/stray"), "nobody's");
        write(&r.join("var/lib/dpkg/status"), STATUS_TEXT);
        write(
            &r.join("var/lib/dpkg/info/libfoo1:amd64.list"),
            "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libfoo.so.1.2\n\
             /lib/x86_64-linux-gnu/libfoo.so.1\n/usr/share/doc/libfoo1/copyright\n",
        );
        write(
            &r.join("var/lib/dpkg/info/tool.list"),
            "/.\n/usr\n/usr/bin\n/usr/bin/tool\n",
        );
        write(
            &r.join("usr/share/doc/libfoo1/copyright"),
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: foo\n\n\
             Files: *\nCopyright: 2020 Someone\nLicense: GPL-2+ or Artistic, and BSD-3-clause\n\n\
             Files: debian/*\nLicense: LGPL-2.1+ with OpenSSL exception\n\n\
             Files: x/*\nLicense: public-domain\n\n\
             License: GPL-2+\n On Debian systems, see /usr/share/common-licenses/GPL-2.\n",
        );
        write(
            &r.join("usr/share/doc/tool/copyright"),
            "This is tool, written by someone.\nLicense: GPL-2+\n",
        );
        write(
            &r.join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        t
    }

    #[test]
    fn reads_status_and_lists() {
        let t = debian_root();
        let db = DpkgDb::load(t.path()).unwrap().unwrap();
        let names: Vec<_> = db.packages().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["libfoo1", "tool"],
            "config-files packages have no files"
        );
        let foo = &db.packages()[0];
        assert_eq!(foo.version, "1.2-1+b1");
        assert_eq!(foo.architecture, "amd64");
        assert_eq!(foo.source.as_deref(), Some("foo"));
        assert_eq!(foo.qualified_name(), "libfoo1:amd64");
        assert!(foo
            .stanza
            .starts_with("Package: libfoo1\nPriority: optional\n"));
        assert!(foo
            .stanza
            .ends_with("Description: the foo library\n It does foo.\n .\n And bar.\n"));
        assert_eq!(foo.field("depends").as_deref(), Some("libc6 (>= 2.34)"));
        assert_eq!(
            foo.field("Description").as_deref(),
            Some("the foo library\n It does foo.\n .\n And bar.")
        );
        let tool = &db.packages()[1];
        assert_eq!(tool.source, None);
        assert_eq!(
            tool.stanza,
            "Package: tool\nArchitecture: amd64\nVersion: 2:3.0~rc1-1\nDescription: a tool\n"
        );
        assert_eq!(
            db.distro(),
            Some(&Distro {
                id: "debian".into(),
                version_id: Some("12".into())
            })
        );
    }

    #[test]
    fn finds_owners_through_usr_merge() {
        let t = debian_root();
        let r = t.path();
        let db = DpkgDb::load(r).unwrap().unwrap();
        let owner = |p: &Path| db.owner(p).map(|p| p.name.as_str());
        let real = r.join("usr/lib/x86_64-linux-gnu/libfoo.so.1.2");
        assert_eq!(owner(&real), Some("libfoo1"));
        // The same file by a path through the symlinks.
        assert_eq!(
            owner(&r.join("lib/x86_64-linux-gnu/libfoo.so.1")),
            Some("libfoo1")
        );
        assert_eq!(owner(&r.join("usr/bin/tool")), Some("tool"));
        assert_eq!(owner(&r.join("usr/bin/stray")), None);
        assert_eq!(owner(&r.join("usr/bin/missing")), None);
        // A name no package lists is owned only through a symlink, told
        // from its directory's listing; asked twice, the same answers.
        fs::create_dir_all(r.join("opt/bin")).unwrap();
        std::os::unix::fs::symlink("../../usr/bin/tool", r.join("opt/bin/tool-alias")).unwrap();
        fs::write(r.join("opt/bin/plain-unlisted"), "x").unwrap();
        for _ in 0..2 {
            assert_eq!(owner(&r.join("opt/bin/tool-alias")), Some("tool"));
            assert_eq!(owner(&r.join("opt/bin/plain-unlisted")), None);
        }
        assert_eq!(owner(&r.join("usr/bin")), None, "directories are not owned");
        assert_eq!(owner(Path::new("/etc/hostname")), None, "outside the root");
        // Relative and non-normalized spellings of the root.
        let cwd = std::env::current_dir().unwrap();
        let rel = crate::loader::sysroot::relative(&cwd, &fs::canonicalize(r).unwrap());
        assert_eq!(owner(&rel.join("usr/bin/../bin/tool")), Some("tool"));
    }

    #[test]
    fn reads_licenses_of_machine_readable_copyright_only() {
        let t = debian_root();
        let db = DpkgDb::load(t.path()).unwrap().unwrap();
        // Read on demand, for the packages an image uses.
        let (license, licenses) = db.licenses(&db.packages()[0]);
        assert_eq!(
            licenses,
            [
                "Artistic",
                "BSD-3-clause",
                "GPL-2+",
                "LGPL-2.1+",
                "public-domain"
            ]
        );
        assert_eq!(
            license.as_deref(),
            Some(
                "Artistic-1.0-Perl AND BSD-3-Clause AND GPL-2.0-or-later AND \
                 LGPL-2.1-or-later AND LicenseRef-public-domain"
            )
        );
        assert_eq!(db.licenses(&db.packages()[1]).0, None);
    }

    #[test]
    fn reads_distroless_status_d() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(&r.join("usr/lib/libbar.so.3"), "bar");
        write(
            &r.join("var/lib/dpkg/status.d/libbar3"),
            "Package: libbar3\nVersion: 3.0-1\nArchitecture: arm64\n",
        );
        write(
            &r.join("var/lib/dpkg/status.d/libbar3.md5sums"),
            "37b51d194a7513e45b56f6524f2d51f2  usr/lib/libbar.so.3\n",
        );
        let db = DpkgDb::load(r).unwrap().unwrap();
        assert_eq!(db.packages().len(), 1);
        let p = db.owner(&r.join("usr/lib/libbar.so.3")).unwrap();
        assert_eq!(
            (p.name.as_str(), p.architecture.as_str()),
            ("libbar3", "arm64")
        );
        assert_eq!(db.distro(), None);
    }

    #[test]
    fn no_database_is_none() {
        let t = tempfile::tempdir().unwrap();
        assert!(DpkgDb::load(t.path()).unwrap().is_none());
        // What `dpkg -x` leaves: files, no database.
        write(&t.path().join("usr/lib/libx.so.1"), "x");
        write(
            &t.path().join("var/lib/dpkg/info/x.list"),
            "/usr/lib/libx.so.1\n",
        );
        assert!(DpkgDb::load(t.path()).unwrap().is_none());
        let err = DpkgDb::load(&t.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("open dpkg root "), "{err}");
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn scans_stanzas_as_the_field_parser_reads_them() {
        let text = "\
 stray continuation
# a comment
Package: one
package: second-name-ignored
 its continuation, ignored too
no colon here
Status: install ok
 installed
Architecture: arm64
Version: 1
Source: src-one (0.9)
Conffiles:
 /etc/one.conf abc
Description: one
 more

Package: two
Status: purge ok not-installed
Version: 2

Package: three
Version: 3
Source: three
";
        let pkgs = packages_in(text);
        assert_eq!(pkgs.len(), 2, "{pkgs:?}");
        let one = &pkgs[0];
        assert_eq!(
            (
                one.name.as_str(),
                one.version.as_str(),
                one.architecture.as_str()
            ),
            ("one", "1", "arm64")
        );
        assert_eq!(one.source.as_deref(), Some("src-one"));
        assert_eq!(
            one.stanza,
            "Package: one\npackage: second-name-ignored\n its continuation, ignored too\n\
             Architecture: arm64\nVersion: 1\nSource: src-one (0.9)\nDescription: one\n more\n"
        );
        assert_eq!(one.field("description").as_deref(), Some("one\n more"));
        // A stanza's own name as Source is no source; no Architecture is "".
        assert_eq!(
            (pkgs[1].name.as_str(), pkgs[1].source.as_ref()),
            ("three", None)
        );
        assert_eq!(pkgs[1].architecture, "");
        assert_eq!(
            pkgs[1].stanza,
            "Package: three\nVersion: 3\nSource: three\n"
        );
    }

    /// What was read ahead gives the database a direct read gives: the
    /// fixture's, and the host's own when it has one.
    #[test]
    fn a_read_ahead_database_is_the_same() {
        let t = debian_root();
        let mut roots = vec![(
            t.path().to_path_buf(),
            vec![
                "usr/lib/x86_64-linux-gnu/libfoo.so.1.2",
                "usr/bin/tool",
                "usr/bin/stray",
            ],
        )];
        if Path::new(STATUS).is_file() {
            roots.push((
                PathBuf::from("/"),
                vec!["usr/bin/bash", "usr/bin/ls", "etc/os-release"],
            ));
        }
        for (root, files) in roots {
            let names: HashSet<OsString> = files
                .iter()
                .map(|f| Path::new(f).file_name().unwrap().to_os_string())
                .chain([OsString::from("copyright")])
                .collect();
            let ahead = DpkgDb::read_ahead(&root);
            assert!(ahead.status.is_some() && !ahead.index.is_empty());
            let fast = DpkgDb::load_with(&root, Some(&names), Some(&ahead))
                .unwrap()
                .unwrap();
            let slow = DpkgDb::load_with(&root, Some(&names), None)
                .unwrap()
                .unwrap();
            assert_eq!(fast.packages(), slow.packages());
            assert!(!fast.packages().is_empty());
            let mut owned = 0;
            for f in files {
                let host = root.join(f);
                let a = fast.owner_entry(&host).map(|(p, l)| (p.clone(), l));
                let b = slow.owner_entry(&host).map(|(p, l)| (p.clone(), l));
                assert_eq!(a, b, "{}", host.display());
                owned += usize::from(a.is_some());
            }
            assert!(owned >= 2, "{}", root.display());
        }
    }

    #[test]
    fn md5sums_lines_keep_paths_as_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let text = b"0123456789abcdef0123456789abcdef  usr/bin/caf\xe9\r\n\
                     nothing-after-the-sum\n\
                     fedcba9876543210fedcba9876543210 \tusr/lib/x y\n  \n";
        let lines: Vec<(&[u8], PathBuf)> = md5sums_lines(text).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].0, b"0123456789abcdef0123456789abcdef");
        assert_eq!(lines[0].1.as_os_str().as_bytes(), b"/usr/bin/caf\xe9");
        assert_eq!(lines[1].1, Path::new("/usr/lib/x y"));
    }

    #[test]
    fn parses_stanzas() {
        let s = parse_stanzas("# comment\nA: 1\nB:\n x\n\ty\n\n\n\nC: 3\nnot a field\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0][1].value, "\n x\n\ty");
        assert_eq!(s[0][1].raw, "B:\n x\n\ty\n");
        assert_eq!(s[1].len(), 1);
    }

    #[test]
    fn stanza_texts_cut_only_at_blank_lines() {
        let text = "A: 1\nB:\n x\n\n \t\r\nC: 3\r\n\nD: 4";
        let parts = stanza_texts(text);
        assert_eq!(parts.concat(), text);
        let pieces: Vec<Vec<Field>> = parts.iter().flat_map(|t| parse_stanzas(t)).collect();
        assert_eq!(pieces, parse_stanzas(text));
        assert_eq!(pieces.len(), 3);
    }

    #[test]
    fn maps_license_names() {
        for (debian, spdx) in [
            ("GPL-2", "GPL-2.0-only"),
            ("GPL-2+", "GPL-2.0-or-later"),
            ("GPL-2.0+", "GPL-2.0-or-later"),
            ("gpl-3.0-or-later", "GPL-3.0-or-later"),
            ("LGPL-2.1", "LGPL-2.1-only"),
            ("LGPL-3+", "LGPL-3.0-or-later"),
            ("AGPL-3+", "AGPL-3.0-or-later"),
            ("GFDL-1.3+", "GFDL-1.3-or-later"),
            ("Expat", "MIT"),
            ("BSD-2-clause", "BSD-2-Clause"),
            ("Apache-2.0", "Apache-2.0"),
            ("CC-BY-3.0", "CC-BY-3.0"),
            ("zlib", "Zlib"),
            ("GPL-7", "LicenseRef-GPL-7"),
            ("public-domain", "LicenseRef-public-domain"),
            ("permissive/other+", "LicenseRef-permissive-other"),
        ] {
            assert_eq!(spdx_license_id(debian), spdx, "{debian}");
        }
        assert!(dep5_licenses("License: MIT\n").is_empty(), "not DEP-5");
        assert_eq!(
            dep5_licenses("Format: x\n\nFiles: *\nLicense: Apache-2.0 and/or Expat\n"),
            ["Apache-2.0", "Expat"]
        );
    }
}
