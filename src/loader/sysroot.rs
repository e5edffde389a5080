//! The filesystem a platform's files come from, seen as the loader sees it:
//! absolute paths rooted at the sysroot, symlinks (even absolute ones) resolved
//! inside it. Behind the [`Fs`] trait so the resolver's tests can use an
//! in-memory tree ([`MemFs`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed at most this many times in one lookup (Linux's limit).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// What a path names, without following a final symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    File { size: u64 },
    Dir,
    Symlink,
    Other,
}

/// Read-only access to a tree of files addressed by absolute paths.
pub trait Fs: Send + Sync {
    fn lstat(&self, path: &Path) -> io::Result<Node>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// Read a whole regular file of at most `limit` bytes.
    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// A whole regular file for parsing; hosts map it rather than copy it,
    /// so a large binary costs only the pages the parser touches.
    fn read_mapped(&self, path: &Path, limit: u64) -> io::Result<FileBytes> {
        self.read(path, limit).map(FileBytes::Owned)
    }
    /// Names in a directory (unsorted).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Where `path` lives on the host, for copying and for messages.
    fn host_path(&self, path: &Path) -> PathBuf;
}

/// File contents, owned or memory-mapped.
pub enum FileBytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(v) => v,
            FileBytes::Mapped(m) => m,
        }
    }
}

/// A directory of the host used as a sysroot ("/" for the host itself).
///
/// Directories and symlinks, once seen, are remembered for the life of the
/// value (and its clones): one build looks up the same few directories
/// thousands of times (every candidate path of every library search runs
/// through `/usr`, `/usr/lib`, …). Regular files and failed lookups are
/// always asked of the filesystem again.
#[derive(Clone, Debug)]
pub struct HostFs {
    root: PathBuf,
    seen: std::sync::Arc<crate::memo::Memo<PathBuf, Seen>>,
}

/// A directory, or a symlink with its target once read.
#[derive(Clone, Debug)]
enum Seen {
    Dir,
    Symlink(Option<PathBuf>),
}

impl HostFs {
    pub fn new(root: impl Into<PathBuf>) -> HostFs {
        HostFs {
            root: root.into(),
            seen: Default::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Fs for HostFs {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        match self.seen.get(path) {
            Some(Seen::Dir) => return Ok(Node::Dir),
            Some(Seen::Symlink(_)) => return Ok(Node::Symlink),
            None => {}
        }
        let m = fs::symlink_metadata(self.host_path(path))?;
        let t = m.file_type();
        let node = if t.is_symlink() {
            Node::Symlink
        } else if t.is_dir() {
            Node::Dir
        } else if t.is_file() {
            Node::File { size: m.len() }
        } else {
            Node::Other
        };
        let seen = match node {
            Node::Dir => Seen::Dir,
            Node::Symlink => Seen::Symlink(None),
            _ => return Ok(node),
        };
        self.seen.insert(path.to_path_buf(), seen);
        Ok(node)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        if let Some(Seen::Symlink(Some(target))) = self.seen.get(path) {
            return Ok(target);
        }
        let target = fs::read_link(self.host_path(path))?;
        self.seen
            .insert(path.to_path_buf(), Seen::Symlink(Some(target.clone())));
        Ok(target)
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let f = fs::File::open(self.host_path(path))?;
        let mut buf = Vec::new();
        f.take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        Ok(buf)
    }

    fn read_mapped(&self, path: &Path, limit: u64) -> io::Result<FileBytes> {
        let f = fs::File::open(self.host_path(path))?;
        let len = f.metadata()?.len();
        if len > limit {
            return Err(io::Error::other(format!("larger than {limit} bytes")));
        }
        if len == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private; a file truncated while
        // it is parsed is the one hazard, the same as for any reader that
        // trusts a length it has just seen.
        let map = unsafe { memmap2::Mmap::map(&f)? };
        Ok(FileBytes::Mapped(map))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in fs::read_dir(self.host_path(path))? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

/// Another tree with some paths (and everything under them) taken out: a
/// base in the cache, whose `[base] remove` paths are still on disk. The
/// paths are real ones (their parents resolved), as [`resolve`] asks
/// for them.
pub struct HidingFs<F> {
    inner: F,
    hidden: Vec<PathBuf>,
}

impl<F: Fs> HidingFs<F> {
    pub fn new(inner: F, hidden: Vec<PathBuf>) -> HidingFs<F> {
        HidingFs { inner, hidden }
    }

    fn check(&self, path: &Path) -> io::Result<()> {
        if self.hidden.iter().any(|h| path.starts_with(h)) {
            Err(io::Error::from(io::ErrorKind::NotFound))
        } else {
            Ok(())
        }
    }
}

impl<F: Fs> Fs for HidingFs<F> {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        self.check(path)?;
        self.inner.lstat(path)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.check(path)?;
        self.inner.read_link(path)
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        self.check(path)?;
        self.inner.read(path, limit)
    }

    fn read_mapped(&self, path: &Path, limit: u64) -> io::Result<FileBytes> {
        self.check(path)?;
        self.inner.read_mapped(path, limit)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.check(path)?;
        let mut names = self.inner.read_dir(path)?;
        names.retain(|n| self.check(&path.join(n)).is_ok());
        Ok(names)
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        self.inner.host_path(path)
    }
}

/// An in-memory tree for tests: files, directories, symlinks.
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    nodes: BTreeMap<PathBuf, MemNode>,
}

#[derive(Clone, Debug)]
enum MemNode {
    File(Vec<u8>),
    Dir,
    Symlink(PathBuf),
}

impl MemFs {
    pub fn new() -> MemFs {
        let mut fs = MemFs::default();
        fs.nodes.insert(PathBuf::from("/"), MemNode::Dir);
        fs
    }

    fn parents(&mut self, path: &Path) {
        let mut p = path.parent();
        while let Some(d) = p {
            self.nodes.entry(d.to_path_buf()).or_insert(MemNode::Dir);
            p = d.parent();
        }
    }

    pub fn file(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> &mut MemFs {
        self.parents(Path::new(path));
        self.nodes.insert(path.into(), MemNode::File(bytes.into()));
        self
    }

    pub fn dir(&mut self, path: &str) -> &mut MemFs {
        self.parents(Path::new(path));
        self.nodes.insert(path.into(), MemNode::Dir);
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut MemFs {
        self.parents(Path::new(path));
        self.nodes
            .insert(path.into(), MemNode::Symlink(target.into()));
        self
    }

    fn get(&self, path: &Path) -> io::Result<&MemNode> {
        self.nodes
            .get(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file or directory"))
    }
}

impl Fs for MemFs {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        Ok(match self.get(path)? {
            MemNode::File(b) => Node::File {
                size: b.len() as u64,
            },
            MemNode::Dir => Node::Dir,
            MemNode::Symlink(_) => Node::Symlink,
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        match self.get(path)? {
            MemNode::Symlink(t) => Ok(t.clone()),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        match self.get(path)? {
            MemNode::File(b) if b.len() as u64 <= limit => Ok(b.clone()),
            MemNode::File(_) => Err(io::Error::other(format!("larger than {limit} bytes"))),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.get(path)?;
        Ok(self
            .nodes
            .keys()
            .filter(|k| k.parent() == Some(path))
            .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// A symlink met while resolving a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The symlink's own path, with every parent already real (symlink-free).
    pub at: PathBuf,
    /// Its target exactly as stored.
    pub target: PathBuf,
}

/// A path resolved inside a sysroot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The real path: no symlink in any component.
    pub real: PathBuf,
    /// What it is (never `Symlink`).
    pub node: Node,
    /// The symlinks followed, in order.
    pub links: Vec<Link>,
}

/// Resolve an absolute `path` inside `fs` as the kernel would inside a chroot:
/// ".." stops at "/", absolute symlink targets restart at the sysroot's root.
pub fn resolve(fs: &dyn Fs, path: &Path) -> io::Result<Resolved> {
    let mut pending: Vec<PathBuf> = Vec::new(); // components, reversed
    push_components(&mut pending, path);
    let mut real = PathBuf::from("/");
    let mut links = Vec::new();
    let mut node = Node::Dir;
    while let Some(name) = pending.pop() {
        if node != Node::Dir {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", real.display()),
            ));
        }
        if name.as_os_str() == ".." {
            real.pop();
            continue;
        }
        let next = real.join(&name);
        match fs.lstat(&next)? {
            Node::Symlink => {
                if links.len() >= MAX_SYMLINK_HOPS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links at {}",
                        next.display()
                    )));
                }
                let target = fs.read_link(&next)?;
                push_components(&mut pending, &target);
                if target.is_absolute() {
                    real = PathBuf::from("/");
                }
                node = Node::Dir;
                links.push(Link { at: next, target });
            }
            n => {
                real = next;
                node = n;
            }
        }
    }
    Ok(Resolved { real, node, links })
}

fn push_components(pending: &mut Vec<PathBuf>, path: &Path) {
    let mut comps: Vec<PathBuf> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => comps.push(PathBuf::from(n)),
            Component::ParentDir => comps.push(PathBuf::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    pending.extend(comps.into_iter().rev());
}

/// Lexical normalization of an absolute path: no ".", "..", or doubled "/".
/// ".." at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The relative path from directory `from` to `to` (both absolute, normalized).
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Layers of trees seen as one: the first layer that has a path wins; a
/// layer may be limited to some subtrees (and the directories leading to
/// them). Used for a foreign platform's default sysroot: Debian's cross tree
/// (`/usr/<triplet>`) over the host's multiarch directories
/// (`/usr/lib/<triplet>`, from `dpkg --add-architecture`).
pub struct UnionFs {
    layers: Vec<UnionLayer>,
}

/// One layer of a [`UnionFs`]: a tree, and the subtrees it is limited to.
type UnionLayer = (Box<dyn Fs>, Option<Vec<PathBuf>>);

impl UnionFs {
    pub fn new() -> UnionFs {
        UnionFs { layers: Vec::new() }
    }

    /// Add a layer; `only` limits it to those subtrees.
    pub fn layer(mut self, fs: impl Fs + 'static, only: Option<Vec<PathBuf>>) -> UnionFs {
        self.layers.push((Box::new(fs), only));
        self
    }

    fn visible(only: &Option<Vec<PathBuf>>, path: &Path) -> bool {
        match only {
            None => true,
            Some(prefixes) => prefixes
                .iter()
                .any(|p| path.starts_with(p) || p.starts_with(path)),
        }
    }

    /// A layer that is already boxed (another sysroot).
    pub fn boxed_layer(mut self, fs: Box<dyn Fs>, only: Option<Vec<PathBuf>>) -> UnionFs {
        self.layers.push((fs, only));
        self
    }

    fn first<T>(&self, path: &Path, f: impl Fn(&dyn Fs) -> io::Result<T>) -> io::Result<T> {
        let mut last = io::Error::from(io::ErrorKind::NotFound);
        for (fs, only) in &self.layers {
            if !Self::visible(only, path) {
                continue;
            }
            match f(fs.as_ref()) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::NotFound => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

impl Default for UnionFs {
    fn default() -> Self {
        UnionFs::new()
    }
}

impl Fs for UnionFs {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        self.first(path, |fs| fs.lstat(path))
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.first(path, |fs| {
            fs.lstat(path)?;
            fs.read_link(path)
        })
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        self.first(path, |fs| fs.read(path, limit))
    }

    fn read_mapped(&self, path: &Path, limit: u64) -> io::Result<FileBytes> {
        self.first(path, |fs| fs.read_mapped(path, limit))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        let mut found = false;
        for (fs, only) in &self.layers {
            if !Self::visible(only, path) {
                continue;
            }
            if let Ok(v) = fs.read_dir(path) {
                found = true;
                for n in v {
                    if Self::visible(only, &path.join(&n)) {
                        names.insert(n);
                    }
                }
            }
        }
        if found {
            Ok(names.into_iter().collect())
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        for (fs, only) in &self.layers {
            if Self::visible(only, path) && fs.lstat(path).is_ok() {
                return fs.host_path(path);
            }
        }
        self.layers
            .first()
            .map(|(fs, _)| fs.host_path(path))
            .unwrap_or_else(|| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_usr_merge_and_absolute_links_inside_root() {
        let mut fs = MemFs::new();
        fs.symlink("/lib", "usr/lib")
            .symlink("/lib64", "usr/lib64")
            .file("/usr/lib/x86_64-linux-gnu/ld.so", "x")
            .symlink("/usr/lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so");
        let r = resolve(&fs, Path::new("/lib64/ld.so")).unwrap();
        assert_eq!(r.real, Path::new("/usr/lib/x86_64-linux-gnu/ld.so"));
        assert_eq!(r.node, Node::File { size: 1 });
        let at: Vec<_> = r.links.iter().map(|l| l.at.clone()).collect();
        assert_eq!(
            at,
            [
                PathBuf::from("/lib64"),
                "/usr/lib64/ld.so".into(),
                "/lib".into()
            ]
        );
    }

    #[test]
    fn dotdot_stops_at_root_and_loops_fail() {
        let mut fs = MemFs::new();
        fs.file("/etc/x", "1").symlink("/a", "b").symlink("/b", "a");
        assert_eq!(
            resolve(&fs, Path::new("/../../etc/x")).unwrap().real,
            Path::new("/etc/x")
        );
        let err = resolve(&fs, Path::new("/a")).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
        let err = resolve(&fs, Path::new("/etc/x/y")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/usr/lib64"), Path::new("/lib/x/ld.so")),
            Path::new("../../lib/x/ld.so")
        );
        assert_eq!(
            relative(Path::new("/"), Path::new("/usr/lib")),
            Path::new("usr/lib")
        );
        assert_eq!(normalize(Path::new("/a/./b/../../..//c")), Path::new("/c"));
    }
}
