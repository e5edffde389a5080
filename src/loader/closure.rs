//! The resolver: an ELF object's interpreter and transitive shared-library
//! closure, found the way glibc's `ld.so` finds them, inside a sysroot.
//!
//! Search order for each DT_NEEDED name of an object `O` (glibc `_dl_map_object`):
//! 1. a name containing '/' is opened as is;
//! 2. if `O` has no DT_RUNPATH: the DT_RPATH of `O`, then of the object that
//!    loaded `O`, and so on up to the executable;
//! 3. (`LD_LIBRARY_PATH` is deliberately not consulted: the image has its own);
//! 4. the DT_RUNPATH of `O` (applies to `O`'s own direct dependencies only);
//! 5. the directories of `/etc/ld.so.conf` (with `include` globs), standing
//!    for `/etc/ld.so.cache`, which ldconfig builds from them;
//! 6. the loader's built-in directories for the ABI.
//!
//! A candidate of another ELF class or machine is skipped, as the loader
//! does. Objects are loaded breadth first; a name that matches an object
//! already loaded (by the name it was asked for, its DT_SONAME, or the same
//! real file) is not searched again. `$ORIGIN` is the directory of the path an
//! object was opened by (the real path for the executable).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::{self, DlopenPriority, ElfClass, ElfInfo, MAX_ELF_SIZE};
use crate::loader::sysroot::{self, Fs, Node};
use crate::memo::Memo;

/// Which tree a path lives in: the platform's sysroot, or the host outside it
/// (a recipe's own build outputs, named relative to the recipe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Sysroot,
    Host,
}

/// How a library was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    Interpreter,
    Path,
    Rpath,
    Runpath,
    LdSoConf,
    DefaultDir,
    /// Named by a `.note.dlopen` note rather than DT_NEEDED.
    Dlopen,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Interpreter => "PT_INTERP",
            Via::Path => "path in DT_NEEDED",
            Via::Rpath => "DT_RPATH",
            Via::Runpath => "DT_RUNPATH",
            Via::LdSoConf => "ld.so.conf",
            Via::DefaultDir => "default directory",
            Via::Dlopen => ".note.dlopen",
        }
    }
}

/// One file the loader opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    /// The name asked for: the DT_NEEDED entry, or the PT_INTERP path.
    pub name: String,
    pub side: Side,
    /// The path the loader opens, in `side`'s tree.
    pub path: PathBuf,
    /// `path` with every symlink resolved.
    pub real: PathBuf,
    /// Where the loader will open it inside the image. Equal to `path` except
    /// for libraries found through `$ORIGIN` of an object placed elsewhere.
    pub image_path: PathBuf,
    /// The object whose DT_NEEDED (or PT_INTERP) named it.
    pub needed_by: PathBuf,
    pub via: Via,
}

/// A DT_NEEDED name nothing satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub name: String,
    pub needed_by: PathBuf,
}

/// The closure of one root object.
#[derive(Clone, Debug, Default)]
pub struct Closure {
    /// PT_INTERP as written in the root object, found or not.
    pub interpreter_path: Option<String>,
    pub interpreter: Option<Dep>,
    /// Every library, once, in load order.
    pub libraries: Vec<Dep>,
    pub missing: Vec<Missing>,
}

/// The object to analyze.
#[derive(Clone, Debug)]
pub struct Root {
    pub side: Side,
    /// Its path in `side`'s tree.
    pub path: PathBuf,
    /// Where it will be in the image (its `$ORIGIN` at run time).
    pub image_path: PathBuf,
}

/// What the loader must know about the platform.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Built-in search directories, in order.
    pub default_dirs: Vec<PathBuf>,
    /// What `$LIB` expands to ("lib/x86_64-linux-gnu").
    pub lib: String,
    /// What `$PLATFORM` expands to ("x86_64").
    pub platform: String,
    /// Follow `.note.dlopen` entries up to this priority (None: ignore them).
    pub dlopen: Option<DlopenPriority>,
    /// A candidate needs `e_flags & flags_mask == flags` (arm float ABI).
    pub flags_mask: u32,
    pub flags: u32,
}

type Parsed = Result<Arc<ElfInfo>, String>;

/// Finds closures; parses each file once however many objects share it.
pub struct Resolver<'a> {
    sysroot: &'a dyn Fs,
    host: &'a dyn Fs,
    config: LoaderConfig,
    conf_dirs: Vec<PathBuf>,
    cache: Memo<(Side, PathBuf), Parsed>,
    /// What `cache` parsed, by host path.
    by_host: Memo<PathBuf, Arc<ElfInfo>>,
    /// Every path tried as a library, and what the loader would find
    /// there: the same few hundred names are searched for through the
    /// same directories by every object of a build.
    tried: Memo<Tried, Found>,
}

/// A library the loader would open: its real path and ELF facts.
type Found = Option<(PathBuf, Arc<ElfInfo>)>;

/// A [`Resolver::candidate`] lookup.
type Tried = (Side, PathBuf, Option<(ElfClass, u16)>);

struct Loaded {
    side: Side,
    real: PathBuf,
    /// Directory `$ORIGIN` expands to, in `side`'s tree and in the image.
    origin: PathBuf,
    image_origin: PathBuf,
    info: Arc<ElfInfo>,
    names: Vec<String>,
    loader: Option<usize>,
    path: PathBuf,
}

/// A directory to search, in the source tree and in the image.
struct SearchDir {
    side: Side,
    dir: PathBuf,
    image_dir: PathBuf,
    via: Via,
}

/// A library an object asks for.
struct Request {
    /// One DT_NEEDED name, or a dlopen note's alternatives.
    names: Vec<String>,
    /// Listed as missing when nothing satisfies it.
    required: bool,
    /// Named by a `.note.dlopen` note.
    dlopen: bool,
}

/// What [`Resolver::search`] found: the directory, the path the loader
/// opens, where that is in the image, its real path and its ELF facts.
type Hit = (SearchDir, PathBuf, PathBuf, PathBuf, Arc<ElfInfo>);

/// A closure being found: the objects loaded so far (the root, then the
/// interpreter if found, then libraries in load order), the order their
/// requests are searched in, and the result.
struct Walk {
    out: Closure,
    loaded: Vec<Loaded>,
    /// Indexes into `loaded`, in the order their requests are searched.
    queue: Vec<usize>,
}

impl Walk {
    /// Whether one of `names` is already in the process (by a name it was
    /// asked for or its DT_SONAME): the interpreter for libc's
    /// "ld-linux-x86-64.so.2", or a library seen before. The interpreter
    /// joins the libraries the first time a library names it.
    fn already_loaded(&mut self, idx: usize, names: &[String]) -> bool {
        for name in names {
            if let Some(i) = self.loaded.iter().position(|l| l.names.contains(name)) {
                if let Some(interp) = &self.out.interpreter {
                    if i == 1 && !self.out.libraries.iter().any(|d| &d.name == name) {
                        self.out.libraries.push(Dep {
                            name: name.clone(),
                            needed_by: self.loaded[idx].path.clone(),
                            ..interp.clone()
                        });
                    }
                }
                return true;
            }
        }
        false
    }

    /// Record the library `hit` found for `name`, needed by `loaded[idx]`:
    /// another name of an object already loaded from the same real file,
    /// or a new library whose requests are then searched.
    fn add_library(&mut self, idx: usize, name: &str, hit: Hit, dlopen: bool) {
        let (dir, path, image_path, real, info) = hit;
        if let Some(i) = self
            .loaded
            .iter()
            .position(|l| l.side == dir.side && l.real == real)
        {
            self.loaded[i].names.push(name.to_string());
            return;
        }
        let mut all_names = vec![name.to_string()];
        all_names.extend(info.soname.iter().cloned());
        self.out.libraries.push(Dep {
            name: name.to_string(),
            side: dir.side,
            path: path.clone(),
            real: real.clone(),
            image_path: image_path.clone(),
            needed_by: self.loaded[idx].path.clone(),
            via: if dlopen { Via::Dlopen } else { dir.via },
        });
        self.queue.push(self.loaded.len());
        self.loaded.push(Loaded {
            side: dir.side,
            origin: parent(&path),
            image_origin: parent(&image_path),
            real,
            info,
            names: all_names,
            loader: Some(idx),
            path,
        });
    }
}

impl<'a> Resolver<'a> {
    /// A resolver over `sysroot`; `host` serves objects outside it. Reads the
    /// sysroot's `/etc/ld.so.conf` once.
    pub fn new(sysroot: &'a dyn Fs, host: &'a dyn Fs, config: LoaderConfig) -> Resolver<'a> {
        let conf_dirs = ld_so_conf_dirs(sysroot);
        Resolver {
            sysroot,
            host,
            config,
            conf_dirs,
            cache: Memo::default(),
            by_host: Memo::default(),
            tried: Memo::default(),
        }
    }

    pub fn fs(&self, side: Side) -> &dyn Fs {
        match side {
            Side::Sysroot => self.sysroot,
            Side::Host => self.host,
        }
    }

    /// The directories ld.so.conf contributes, in order.
    pub fn conf_dirs(&self) -> &[PathBuf] {
        &self.conf_dirs
    }

    /// Parse (once) the ELF file at the real path `real`.
    pub fn parse(&self, side: Side, real: &Path) -> Parsed {
        self.cache.get_or(&(side, real.to_path_buf()), || {
            let parsed = match self.fs(side).read_mapped(real, MAX_ELF_SIZE) {
                Ok(bytes) => elf::parse(&bytes).map(Arc::new),
                Err(e) => Err(io_cause(&e)),
            };
            if let Ok(info) = &parsed {
                self.by_host
                    .insert(self.fs(side).host_path(real), info.clone());
            }
            parsed
        })
    }

    /// The ELF facts of the file at a host path (a plan's source): as
    /// [`Resolver::parse`] found them under either tree, else parsed now
    /// (once). None when it is not an ELF file this parser reads.
    pub fn parse_host_file(&self, host: &Path) -> Option<Arc<ElfInfo>> {
        self.by_host
            .get(host)
            .or_else(|| self.parse(Side::Host, host).ok())
    }

    /// The closure of `root`. `Err` only when the root itself can't be read
    /// or isn't ELF; missing libraries are listed in [`Closure::missing`].
    pub fn closure(&self, root: &Root) -> Result<Closure, String> {
        let mut walk = Walk {
            out: Closure::default(),
            loaded: vec![self.load_root(root)?],
            queue: vec![0],
        };
        self.load_interpreter(&mut walk, root);
        // Breadth first: each loaded object's requests, in load order.
        let mut next = 0;
        while next < walk.queue.len() {
            let idx = walk.queue[next];
            next += 1;
            for request in self.requests(&walk.loaded[idx].info) {
                self.satisfy(&mut walk, idx, &request);
            }
        }
        Ok(walk.out)
    }

    /// Open the root object: a regular file this parser reads, loaded
    /// first, with the directory of its real path as `$ORIGIN`.
    fn load_root(&self, root: &Root) -> Result<Loaded, String> {
        let resolved =
            sysroot::resolve(self.fs(root.side), &root.path).map_err(|e| io_cause(&e))?;
        if !matches!(resolved.node, Node::File { .. }) {
            return Err("not a regular file".into());
        }
        let info = self.parse(root.side, &resolved.real)?;
        let image_real = sysroot::normalize(&root.image_path);
        Ok(Loaded {
            side: root.side,
            origin: parent(&resolved.real),
            image_origin: parent(&image_real),
            real: resolved.real.clone(),
            names: info.soname.iter().cloned().collect(),
            info: info.clone(),
            loader: None,
            path: root.path.clone(),
        })
    }

    /// The root's PT_INTERP, looked up in the sysroot: loaded second
    /// (under the path written and its DT_SONAME), or listed as missing.
    fn load_interpreter(&self, walk: &mut Walk, root: &Root) {
        let info = walk.loaded[0].info.clone();
        walk.out.interpreter_path = info.interpreter.clone();
        let Some(interp) = &info.interpreter else {
            return;
        };
        let path = PathBuf::from(interp);
        match self.candidate(Side::Sysroot, &path, None) {
            Some((real, iinfo)) => {
                let mut names = vec![interp.clone()];
                names.extend(iinfo.soname.iter().cloned());
                walk.out.interpreter = Some(Dep {
                    name: interp.clone(),
                    side: Side::Sysroot,
                    path: path.clone(),
                    real: real.clone(),
                    image_path: sysroot::normalize(&path),
                    needed_by: root.path.clone(),
                    via: Via::Interpreter,
                });
                walk.loaded.push(Loaded {
                    side: Side::Sysroot,
                    origin: parent(&path),
                    image_origin: parent(&path),
                    real,
                    info: iinfo,
                    names,
                    loader: None,
                    path,
                });
            }
            None => walk.out.missing.push(Missing {
                name: interp.clone(),
                needed_by: root.path.clone(),
            }),
        }
    }

    /// What an object asks the loader for: its DT_NEEDED names, then the
    /// libraries its dlopen notes ask for (each a list of alternatives), up
    /// to the configured priority.
    fn requests(&self, info: &ElfInfo) -> Vec<Request> {
        let mut requests: Vec<Request> = info
            .needed
            .iter()
            .map(|n| Request {
                names: vec![n.clone()],
                required: true,
                dlopen: false,
            })
            .collect();
        if let Some(level) = self.config.dlopen {
            for note in info.dlopen.iter().filter(|n| n.priority <= level) {
                requests.push(Request {
                    names: note.sonames.clone(),
                    required: note.priority == DlopenPriority::Required,
                    dlopen: true,
                });
            }
        }
        requests
    }

    /// Satisfy one request of `loaded[idx]`: by an object already loaded,
    /// else by the first of its names the search finds, else (when it is
    /// required) as missing.
    fn satisfy(&self, walk: &mut Walk, idx: usize, request: &Request) {
        if walk.already_loaded(idx, &request.names) {
            return;
        }
        for name in &request.names {
            if let Some(hit) = self.search(&walk.loaded, idx, name) {
                walk.add_library(idx, name, hit, request.dlopen);
                return;
            }
        }
        if request.required {
            walk.out.missing.push(Missing {
                name: request.names.join(" or "),
                needed_by: walk.loaded[idx].path.clone(),
            });
        }
    }

    /// Search for `name` needed by `loaded[idx]`.
    fn search(&self, loaded: &[Loaded], idx: usize, name: &str) -> Option<Hit> {
        let req = &loaded[idx];
        let want = (req.info.class, req.info.machine);
        // glibc expands $ORIGIN, $LIB and $PLATFORM in DT_NEEDED too (dl-deps.c).
        let (expanded, uses_origin) = self.expand_dst(name, &req.origin);
        if expanded.contains('/') {
            if !expanded.starts_with('/') {
                // Relative to the process's working directory: unknowable here.
                return None;
            }
            let side = if uses_origin { req.side } else { Side::Sysroot };
            let path = PathBuf::from(&expanded);
            let (real, info) = self.candidate(side, &path, Some(want))?;
            let image = if uses_origin {
                sysroot::normalize(Path::new(&self.expand_dst(name, &req.image_origin).0))
            } else {
                sysroot::normalize(&path)
            };
            let dir = SearchDir {
                side,
                dir: parent(&path),
                image_dir: parent(&image),
                via: Via::Path,
            };
            return Some((dir, path, image, real, info));
        }
        for dir in self.search_dirs(loaded, idx) {
            let path = dir.dir.join(name);
            if let Some((real, info)) = self.candidate(dir.side, &path, Some(want)) {
                let image = dir.image_dir.join(name);
                return Some((dir, path, image, real, info));
            }
        }
        None
    }

    fn search_dirs(&self, loaded: &[Loaded], idx: usize) -> Vec<SearchDir> {
        let req = &loaded[idx];
        let mut dirs = Vec::new();
        if !req.info.has_runpath {
            let mut l = Some(idx);
            while let Some(i) = l {
                self.expand(&loaded[i], &loaded[i].info.rpath, Via::Rpath, &mut dirs);
                l = loaded[i].loader;
            }
        }
        self.expand(req, &req.info.runpath, Via::Runpath, &mut dirs);
        for d in &self.conf_dirs {
            dirs.push(SearchDir {
                side: Side::Sysroot,
                dir: d.clone(),
                image_dir: d.clone(),
                via: Via::LdSoConf,
            });
        }
        for d in &self.config.default_dirs {
            dirs.push(SearchDir {
                side: Side::Sysroot,
                dir: d.clone(),
                image_dir: d.clone(),
                via: Via::DefaultDir,
            });
        }
        dirs
    }

    /// Expand `$ORIGIN`, `$LIB` and `$PLATFORM` in an object's search entries.
    /// Entries that are not absolute after expansion (relative to the
    /// process's working directory) are skipped.
    fn expand(&self, obj: &Loaded, entries: &[String], via: Via, out: &mut Vec<SearchDir>) {
        for e in entries {
            let (dir, uses_origin) = self.expand_dst(e, &obj.origin);
            if !dir.starts_with('/') {
                continue;
            }
            let (side, image_dir) = if uses_origin {
                (
                    obj.side,
                    PathBuf::from(self.expand_dst(e, &obj.image_origin).0),
                )
            } else {
                (Side::Sysroot, PathBuf::from(&dir))
            };
            out.push(SearchDir {
                side,
                dir: PathBuf::from(dir),
                image_dir: sysroot::normalize(&image_dir),
                via,
            });
        }
    }

    /// Replace the loader's dynamic string tokens (`$ORIGIN`, `${ORIGIN}`,
    /// `$LIB`, `$PLATFORM`) as glibc's `is_dst` matches them: a bare token
    /// must not run on into a name character. Unknown `$X` stays literal.
    /// Returns the text and whether `$ORIGIN` was used.
    fn expand_dst(&self, s: &str, origin: &Path) -> (String, bool) {
        let origin = origin.to_string_lossy();
        let tokens: [(&str, &str); 3] = [
            ("ORIGIN", &origin),
            ("LIB", &self.config.lib),
            ("PLATFORM", &self.config.platform),
        ];
        let mut out = String::with_capacity(s.len());
        let mut used_origin = false;
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let mut matched = None;
            for (name, value) in tokens {
                if let Some(tail) = after
                    .strip_prefix('{')
                    .and_then(|a| a.strip_prefix(name))
                    .and_then(|a| a.strip_prefix('}'))
                {
                    matched = Some((name, value, tail));
                    break;
                }
                if let Some(tail) = after.strip_prefix(name) {
                    let next = tail.bytes().next();
                    if !next.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        matched = Some((name, value, tail));
                        break;
                    }
                }
            }
            match matched {
                Some((name, value, tail)) => {
                    used_origin |= name == "ORIGIN";
                    out.push_str(value);
                    rest = tail;
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        (out, used_origin)
    }

    /// Find `name` as `dlopen` from a library without RPATH or RUNPATH would:
    /// the ld.so.conf directories, then the default ones. Returns the path
    /// the loader opens.
    pub fn find_library(&self, name: &str, class: ElfClass, machine: u16) -> Option<PathBuf> {
        if name.starts_with('/') {
            return self
                .candidate(Side::Sysroot, Path::new(name), Some((class, machine)))
                .map(|_| PathBuf::from(name));
        }
        self.conf_dirs
            .iter()
            .chain(&self.config.default_dirs)
            .map(|d| d.join(name))
            .find(|p| {
                self.candidate(Side::Sysroot, p, Some((class, machine)))
                    .is_some()
            })
    }

    /// Open `path` as the loader would: a regular file, ELF, and (when `want`
    /// is given) of the requesting object's class and machine.
    fn candidate(&self, side: Side, path: &Path, want: Option<(ElfClass, u16)>) -> Found {
        self.tried.get_or(&(side, path.to_path_buf(), want), || {
            self.try_candidate(side, path, want)
        })
    }

    fn try_candidate(&self, side: Side, path: &Path, want: Option<(ElfClass, u16)>) -> Found {
        let r = sysroot::resolve(self.fs(side), path).ok()?;
        if !matches!(r.node, Node::File { .. }) {
            return None;
        }
        let info = self.parse(side, &r.real).ok()?;
        if let Some((class, machine)) = want {
            if info.class != class
                || info.machine != machine
                || info.flags & self.config.flags_mask != self.config.flags
            {
                return None;
            }
        }
        Some((r.real, info))
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn io_cause(e: &io::Error) -> String {
    crate::error::io_message(e)
}

/// The directories named by the sysroot's `/etc/ld.so.conf`, following
/// `include` lines (glob patterns, matched in sorted order), in order, without
/// duplicates. A missing file contributes nothing.
pub fn ld_so_conf_dirs(fs: &dyn Fs) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut seen_files = Vec::new();
    let conf = Path::new("/etc/ld.so.conf");
    if sysroot::resolve(fs, conf).is_ok() {
        read_conf(fs, conf, &mut dirs, &mut seen_files, 0);
    } else {
        // A sysroot extracted from packages (dpkg -x) has the snippets of
        // /etc/ld.so.conf.d but not the file base-files would install, whose
        // whole content is this include.
        for f in glob(fs, Path::new("/etc/ld.so.conf.d/*.conf")) {
            read_conf(fs, &f, &mut dirs, &mut seen_files, 1);
        }
    }
    let mut unique: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    unique
}

fn read_conf(
    fs: &dyn Fs,
    file: &Path,
    dirs: &mut Vec<PathBuf>,
    seen: &mut Vec<PathBuf>,
    depth: usize,
) {
    if depth > 16 || seen.iter().any(|s| s == file) {
        return;
    }
    seen.push(file.to_path_buf());
    let Ok(r) = sysroot::resolve(fs, file) else {
        return;
    };
    let Ok(bytes) = fs.read(&r.real, 1 << 20) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("include") {
            if rest.starts_with(char::is_whitespace) {
                for pattern in rest.split_whitespace() {
                    let pattern = if pattern.starts_with('/') {
                        PathBuf::from(pattern)
                    } else {
                        parent(file).join(pattern)
                    };
                    for f in glob(fs, &pattern) {
                        read_conf(fs, &f, dirs, seen, depth + 1);
                    }
                }
                continue;
            }
        }
        if line.starts_with("hwcap") && line[5..].starts_with(char::is_whitespace) {
            continue;
        }
        for d in line.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
            // ldconfig accepts "dir=TYPE"; the type is irrelevant here.
            let d = d.split('=').next().unwrap_or("");
            if d.starts_with('/') {
                dirs.push(sysroot::normalize(Path::new(d)));
            }
        }
    }
}

/// Expand `*`, `?` and `[...]` in the last component of an absolute pattern;
/// matches come back sorted, as glob(3) returns them.
fn glob(fs: &dyn Fs, pattern: &Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = parent(pattern);
    if !name.contains(['*', '?', '[']) {
        return vec![pattern.to_path_buf()];
    }
    let Ok(r) = sysroot::resolve(fs, &dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = fs
        .read_dir(&r.real)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !n.starts_with('.') && wildmatch(name.as_bytes(), n.as_bytes()))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// fnmatch(3)-style matching of `*`, `?` and `[...]` (no special '/').
pub(crate) fn wildmatch(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| wildmatch(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && wildmatch(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().position(|&c| c == b']') else {
                return !s.is_empty() && s[0] == b'[' && wildmatch(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let class = &p[1..end];
            let (neg, class) = match class.first() {
                Some(b'!') | Some(b'^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && wildmatch(&p[end + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && wildmatch(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildmatch(b"*.conf", b"libc.conf"));
        assert!(!wildmatch(b"*.conf", b"libc.conf.bak"));
        assert!(wildmatch(b"x?[0-9]", b"xa5"));
        assert!(!wildmatch(b"x[!0-9]", b"x5"));
    }
}
