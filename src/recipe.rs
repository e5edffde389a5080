//! Recipes: TOML → raw serde types → a validated [`Recipe`]. Every check on
//! the user's input happens here, before any file is read; later stages take
//! the validated types and do not check again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoResultExt, Result};
use crate::platform::Platform;

/// The PATH an image gets when the recipe sets no `env`.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/bin:/usr/bin:/bin";

// ---------------------------------------------------------------- raw types

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: String,
    tag: Option<String>,
    platforms: Option<Vec<String>>,
    epoch: Option<i64>,
    config: Option<RawConfig>,
    #[serde(default)]
    sysroot: BTreeMap<String, String>,
    #[serde(default)]
    toolchains: Vec<String>,
    #[serde(default)]
    binary: Vec<RawCopy>,
    #[serde(default)]
    file: Vec<RawCopy>,
    #[serde(default)]
    tree: Vec<RawCopy>,
    #[serde(default)]
    dir: Vec<RawDir>,
    #[serde(default)]
    symlink: Vec<RawSymlink>,
    #[serde(default)]
    library: Vec<RawLibrary>,
    // Distroless runtime files.
    users: Option<bool>,
    #[serde(default)]
    user: Vec<RawUser>,
    #[serde(default)]
    group: Vec<RawGroup>,
    ca_certificates: Option<bool>,
    tzdata: Option<RawSelection>,
    nss: Option<Vec<String>>,
    gconv: Option<RawSelection>,
    libgcc_s: Option<bool>,
    dlopen: Option<String>,
    tmp: Option<bool>,
    ld_so_cache: Option<bool>,
    vcs: Option<bool>,
    base: Option<RawBase>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    index_annotations: BTreeMap<String, String>,
}

/// `[base]`: the image to build on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    image: Option<RawBaseImage>,
    squash: Option<bool>,
    config: Option<bool>,
    libraries: Option<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// One source for every platform, or one per platform.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawBaseImage {
    One(String),
    PerPlatform(BTreeMap<String, String>),
}

/// `true`/`false` or a list of names.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSelection {
    Flag(bool),
    List(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLibrary {
    /// A soname found as dlopen finds it, or an absolute path in the sysroot.
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    uid: u32,
    gid: Option<u32>,
    home: Option<String>,
    shell: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    gid: u32,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    workdir: Option<String>,
    user: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    exposed_ports: Vec<String>,
    stop_signal: Option<String>,
    volumes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCopy {
    src: RawSrc,
    dest: Option<String>,
    mode: Option<RawMode>,
    owner: Option<String>,
    /// `[[tree]]` only: glob patterns of paths to leave out.
    #[serde(default)]
    exclude: Vec<String>,
    /// Extended attributes of the input to carry into the layer (as PAX
    /// `SCHILY.xattr.*` records): `security.capability` or `user.*`.
    #[serde(default)]
    xattrs: Vec<String>,
    /// `[[tree]]` only: the special files it may hold ("fifo", "char",
    /// "block"), kept as such in the layer.
    #[serde(default)]
    specials: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    dest: String,
    mode: Option<RawMode>,
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymlink {
    dest: String,
    target: String,
}

/// `src = "path"` or `src = { "linux/amd64" = "...", "linux/arm64" = "..." }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSrc {
    One(String),
    PerPlatform(BTreeMap<String, String>),
}

impl std::fmt::Display for RawSrc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawSrc::One(s) => f.write_str(s),
            RawSrc::PerPlatform(m) => {
                let v: Vec<&str> = m.values().map(String::as_str).collect();
                write!(f, "{}", v.join(" | "))
            }
        }
    }
}

/// `mode = "0755"` or `mode = 0o755`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMode {
    Text(String),
    Number(i64),
}

// ---------------------------------------------------------- validated types

/// A validated recipe.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The recipe file, for messages.
    pub path: PathBuf,
    /// The directory relative sources are taken from.
    pub base: PathBuf,
    pub name: String,
    pub tag: String,
    /// Sorted, without duplicates; never empty.
    pub platforms: Vec<Platform>,
    pub epoch: Option<u64>,
    pub config: ImageConfig,
    /// `[sysroot]`: per-platform sysroot directories (relative ones joined
    /// to the recipe's directory).
    pub sysroots: BTreeMap<Platform, PathBuf>,
    /// `toolchains = [...]`: extra toolchain files or directories.
    pub toolchains: Vec<PathBuf>,
    /// In recipe order: binaries, files, trees, dirs, symlinks, libraries.
    pub entries: Vec<Entry>,
    /// The distroless runtime files the recipe asks for.
    pub runtime: Runtime,
    /// `[base]`: the image this one is built on, if any.
    pub base_image: Option<BaseSpec>,
    /// `[annotations]`: over bareroot's own on each platform's manifest.
    pub annotations: BTreeMap<String, String>,
    /// `[index_annotations]`: on the image index of a multi-platform image.
    pub index_annotations: BTreeMap<String, String>,
    /// `vcs = true`: annotate the source and revision of the git checkout
    /// holding the recipe.
    pub vcs: bool,
}

/// `[base]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseSpec {
    /// The source for every platform, or one per platform (every recipe
    /// platform has one).
    pub image: BaseImage,
    /// One layer holding the base's files and ours.
    pub squash: bool,
    /// Inherit the base's runtime config (each `[config]` key the recipe
    /// sets wins).
    pub config: bool,
    pub libraries: Libraries,
    /// Base paths to delete, sorted.
    pub remove: Vec<ImagePath>,
}

/// Where the base comes from: a source string as `--base` takes it
/// (`oci:DIR[:TAG]`, `rootfs:FILE`, a registry reference, …), relative
/// paths still relative to the recipe's directory (see [`Recipe::base`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseImage {
    One(String),
    PerPlatform(BTreeMap<Platform, String>),
}

impl BaseImage {
    /// The source for `platform`.
    pub fn for_platform(&self, platform: &Platform) -> Option<&str> {
        match self {
            BaseImage::One(s) => Some(s),
            BaseImage::PerPlatform(m) => m.get(platform).map(String::as_str),
        }
    }
}

/// `[base] libraries`: whose copy of a library the base also has is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libraries {
    /// The base's, where the loader would open it; ours is not copied.
    Base,
    /// Ours, copied over the base's.
    Recipe,
}

/// Numeric owner of an image entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// All of something, or the listed ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    Only(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Runtime files of an otherwise empty rootfs (the recipe's top-level keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    /// `users = true` or any `[[user]]`/`[[group]]`: /etc/passwd and
    /// /etc/group with distroless's root, nobody and nonroot plus these.
    pub users: Option<(Vec<User>, Vec<Group>)>,
    pub ca_certificates: bool,
    pub tzdata: Option<Selection>,
    /// glibc NSS modules ("files", "dns", ...); empty: no NSS profile.
    pub nss: Vec<String>,
    pub gconv: Option<Selection>,
    /// None: add libgcc_s.so.1 when glibc is in the image (it dlopens it).
    pub libgcc_s: Option<bool>,
    /// Follow `.note.dlopen` entries up to this priority.
    pub dlopen: Option<crate::elf::DlopenPriority>,
    /// `/tmp` with mode 1777 (default true).
    pub tmp: bool,
    /// `/etc/ld.so.cache` for the image's libraries (None: when glibc is in
    /// the image).
    pub ld_so_cache: Option<bool>,
}

/// The users every `users` image has, as distroless writes them.
pub fn base_users() -> (Vec<User>, Vec<Group>) {
    let u = |name: &str, id: u32, home: &str| User {
        name: name.into(),
        uid: id,
        gid: id,
        home: home.into(),
        shell: "/sbin/nologin".into(),
    };
    let g = |name: &str, gid: u32| Group {
        name: name.into(),
        gid,
        members: Vec::new(),
    };
    (
        vec![
            u("root", 0, "/root"),
            u("nobody", 65534, "/nonexistent"),
            u("nonroot", 65532, "/home/nonroot"),
        ],
        vec![
            g("root", 0),
            g("nobody", 65534),
            g("tty", 5),
            g("staff", 50),
            g("nonroot", 65532),
        ],
    )
}

/// The `[config]` table, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: BTreeSet<String>,
    pub stop_signal: Option<String>,
    pub volumes: BTreeSet<String>,
    /// The keys the recipe set ("env", "entrypoint", …): on a base with
    /// `config = true`, only these replace the base's.
    pub set: BTreeSet<&'static str>,
}

/// An entry's `src` as the recipe wrote it: one template, or one per
/// platform. Templates may use `{os}`, `{arch}`, `{variant}` and `{triplet}`
/// (the platform's Debian multiarch triplet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrcSpec {
    One(String),
    PerPlatform(BTreeMap<Platform, String>),
}

/// The placeholders a `src` template may use.
pub const PLACEHOLDERS: &[&str] = &["os", "arch", "variant", "triplet"];

impl SrcSpec {
    /// The source for one platform.
    pub fn resolve(
        &self,
        platform: &Platform,
        triplet: &str,
        base: &Path,
    ) -> std::result::Result<Source, String> {
        let template = match self {
            SrcSpec::One(t) => t,
            SrcSpec::PerPlatform(m) => m
                .get(platform)
                .ok_or_else(|| format!("src has no entry for {platform}"))?,
        };
        let text = template
            .replace("{os}", &platform.os)
            .replace("{arch}", &platform.architecture)
            .replace("{variant}", platform.variant.as_deref().unwrap_or(""))
            .replace("{triplet}", triplet);
        let p = Path::new(&text);
        Ok(if p.is_absolute() {
            Source::Sysroot(p.to_path_buf())
        } else {
            Source::Host(base.join(p))
        })
    }

    fn templates(&self) -> Vec<&String> {
        match self {
            SrcSpec::One(t) => vec![t],
            SrcSpec::PerPlatform(m) => m.values().collect(),
        }
    }
}

/// Check a template's `{...}` placeholders.
fn check_template(t: &str) -> std::result::Result<(), String> {
    if t.is_empty() || t.contains('\0') {
        return Err("src must be a non-empty path without NUL bytes".into());
    }
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("src {t:?}: unclosed '{{'"))?;
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "src {t:?}: unknown placeholder {{{name}}} (known: {{os}}, {{arch}}, {{variant}}, {{triplet}})"
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Where an entry's source is, for one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An absolute path, looked up inside the platform's sysroot.
    Sysroot(PathBuf),
    /// A path relative to the recipe file, already joined to its directory.
    Host(PathBuf),
}

impl Source {
    pub fn display(&self) -> String {
        match self {
            Source::Sysroot(p) | Source::Host(p) => p.display().to_string(),
        }
    }
}

/// The special files a `[[tree]]` may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecialKind {
    Fifo,
    CharDevice,
    BlockDevice,
}

impl SpecialKind {
    /// Its name in recipes and messages.
    pub fn name(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::CharDevice => "char",
            SpecialKind::BlockDevice => "block",
        }
    }

    pub fn from_name(name: &str) -> Option<SpecialKind> {
        [
            SpecialKind::Fifo,
            SpecialKind::CharDevice,
            SpecialKind::BlockDevice,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// One `[[binary]]`, `[[file]]`, `[[tree]]`, `[[dir]]` or `[[symlink]]`.
#[derive(Clone, Debug)]
pub struct Entry {
    /// "[[binary]] #1 (/usr/bin/jq)": how messages name this entry.
    pub label: String,
    pub kind: EntryKind,
    /// The extended attributes of its input files the layer keeps (only
    /// `[[binary]]`, `[[file]]` and `[[tree]]` have any).
    pub xattrs: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum EntryKind {
    Binary {
        src: SrcSpec,
        dest: ImagePath,
        mode: Option<u32>,
        owner: Option<Owner>,
    },
    File {
        src: SrcSpec,
        dest: ImagePath,
        mode: Option<u32>,
        owner: Option<Owner>,
    },
    Tree {
        src: SrcSpec,
        dest: ImagePath,
        owner: Option<Owner>,
        /// Glob patterns: without '/', matched against every file name
        /// (`__pycache__`); with '/', against the path from the tree's root.
        exclude: Vec<String>,
        /// The special files the tree may hold and the layer keeps.
        specials: Vec<SpecialKind>,
    },
    Dir {
        dest: ImagePath,
        mode: Option<u32>,
        owner: Option<Owner>,
    },
    /// `[[library]]`: a library (and its closure) nothing names in DT_NEEDED.
    Library {
        name: String,
    },
    Symlink {
        dest: ImagePath,
        target: String,
    },
}

/// A normalized absolute path inside the image: starts with "/", no ".",
/// "..", empty or whiteout components, no NUL, never the root itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

impl ImagePath {
    /// Normalize `p` (relative paths are taken from "/"); refuse anything that
    /// would leave the root or cannot be stored in a layer.
    pub fn new(p: &str) -> std::result::Result<ImagePath, String> {
        if p.contains('\0') {
            return Err("path contains a NUL byte".into());
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in Path::new(p).components() {
            match c {
                Component::Normal(n) => {
                    let n = n.to_str().ok_or("path is not valid UTF-8")?;
                    if n.starts_with(".wh.") {
                        return Err(format!("{n:?} is an OCI whiteout name"));
                    }
                    parts.push(n);
                }
                Component::ParentDir if parts.pop().is_none() => {
                    return Err(format!("{p:?} escapes the image root"));
                }
                _ => {}
            }
        }
        if parts.is_empty() {
            return Err(format!("{p:?} names the image root, not a path in it"));
        }
        Ok(ImagePath(format!("/{}", parts.join("/"))))
    }

    pub fn from_path(p: &Path) -> std::result::Result<ImagePath, String> {
        ImagePath::new(p.to_str().ok_or("path is not valid UTF-8")?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// The name as stored in a tar layer: no leading "/".
    pub fn rel(&self) -> &str {
        &self.0[1..]
    }

    /// The parent directory, `None` for a top-level entry.
    pub fn parent(&self) -> Option<ImagePath> {
        let i = self.0.rfind('/')?;
        (i > 0).then(|| ImagePath(self.0[..i].to_string()))
    }

    /// The whiteout entry that deletes this path from the layers below
    /// (`DIR/.wh.NAME`): the one place such a name is made.
    pub fn whiteout(&self) -> ImagePath {
        let (dir, name) = self.0.rsplit_once('/').unwrap_or(("", &self.0));
        ImagePath(format!("{dir}/.wh.{name}"))
    }

    /// The marker that makes this directory opaque, hiding what the layers
    /// below have in it (`DIR/.wh..wh..opq`).
    pub fn opaque_marker(&self) -> ImagePath {
        ImagePath(format!("{}/.wh..wh..opq", self.0))
    }

    /// Is this a whiteout or an opaque marker?
    pub fn is_whiteout(&self) -> bool {
        self.0
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".wh."))
    }

    pub fn join(&self, rel: &str) -> std::result::Result<ImagePath, String> {
        ImagePath::new(&format!("{}/{}", self.0, rel))
    }
}

impl std::fmt::Display for ImagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Recipe {
    /// Read and validate a recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).with_path("read recipe", path)?;
        Recipe::parse(&text, path)
    }

    /// Validate recipe text; `path` names it in messages and anchors relative sources.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe> {
        let fail = |m: String| Error::msg(format!("parse recipe {}: {m}", path.display()));
        let mut raw = deserialize(text).map_err(&fail)?;
        let base = recipe_dir(path);

        check_name(&raw.name).map_err(|m| fail(format!("name {:?}: {m}", raw.name)))?;
        let tag = raw.tag.clone().unwrap_or_else(|| "latest".into());
        check_tag(&tag).map_err(|m| fail(format!("tag {tag:?}: {m}")))?;
        let platforms = validate_platforms(raw.platforms.clone()).map_err(&fail)?;
        let epoch = validate_epoch(raw.epoch).map_err(&fail)?;

        let runtime = validate_runtime(&raw).map_err(&fail)?;
        let users = runtime.users.as_ref();
        let config = config_for_users(
            raw.config.take().unwrap_or_default(),
            users,
            raw.base.is_some(),
        )
        .map_err(&fail)?;

        // In recipe order: binaries, files, trees, dirs, symlinks, libraries.
        let mut entries = Vec::new();
        for (i, b) in raw.binary.into_iter().enumerate() {
            entries.push(copy_entry(i, b, true, &platforms, users).map_err(&fail)?);
        }
        for (i, f) in raw.file.into_iter().enumerate() {
            entries.push(copy_entry(i, f, false, &platforms, users).map_err(&fail)?);
        }
        for (i, t) in raw.tree.into_iter().enumerate() {
            entries.push(tree_entry(i, t, &platforms, users).map_err(&fail)?);
        }
        for (i, d) in raw.dir.into_iter().enumerate() {
            entries.push(dir_entry(i, d, users).map_err(&fail)?);
        }
        for (i, s) in raw.symlink.into_iter().enumerate() {
            entries.push(symlink_entry(i, s).map_err(&fail)?);
        }
        for (i, l) in raw.library.into_iter().enumerate() {
            entries.push(library_entry(i, l).map_err(&fail)?);
        }

        for (table, map) in [
            ("[annotations]", &raw.annotations),
            ("[index_annotations]", &raw.index_annotations),
        ] {
            check_annotations(map).map_err(|m| fail(format!("{table} {m}")))?;
        }
        let base_spec = raw
            .base
            .map(|b| validate_base(b, &platforms))
            .transpose()
            .map_err(&fail)?;
        let sysroots = validate_sysroots(raw.sysroot, &base).map_err(&fail)?;
        let toolchains = raw.toolchains.iter().map(|t| base.join(t)).collect();

        Ok(Recipe {
            runtime,
            path: path.to_path_buf(),
            base,
            sysroots,
            toolchains,
            name: raw.name,
            tag,
            platforms,
            epoch,
            config,
            entries,
            base_image: base_spec,
            annotations: raw.annotations,
            index_annotations: raw.index_annotations,
            vcs: raw.vcs.unwrap_or(false),
        })
    }
}

/// The image's users and groups, when the recipe has any.
type Users<'a> = Option<&'a (Vec<User>, Vec<Group>)>;

/// Deserialize the TOML into the raw types; a syntax or type error names
/// its line and column.
fn deserialize(text: &str) -> std::result::Result<RawRecipe, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| {
                let (line, col) = line_col(text, s.start);
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        format!("{at}{}", e.message().trim().replace('\n', " "))
    })
}

/// The directory relative sources are taken from: the recipe's own ("."
/// for a bare file name).
fn recipe_dir(path: &Path) -> PathBuf {
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}

/// `platforms`: parsed, sorted, without duplicates; the host's when none
/// are given.
fn validate_platforms(names: Option<Vec<String>>) -> std::result::Result<Vec<Platform>, String> {
    let mut platforms: Vec<Platform> = Vec::new();
    for p in names.unwrap_or_default() {
        platforms.push(p.parse().map_err(|e: Error| e.to_string())?);
    }
    if platforms.is_empty() {
        platforms.push(Platform::host());
    }
    platforms.sort();
    platforms.dedup();
    Ok(platforms)
}

/// `epoch`: seconds since 1970, never negative.
fn validate_epoch(epoch: Option<i64>) -> std::result::Result<Option<u64>, String> {
    match epoch {
        None => Ok(None),
        Some(e) if e >= 0 => Ok(Some(e as u64)),
        Some(e) => Err(format!(
            "epoch {e}: must be a non-negative number of seconds"
        )),
    }
}

/// `[config]`, validated, with its `user` resolved through the image's users.
fn config_for_users(
    c: RawConfig,
    users: Users,
    on_base: bool,
) -> std::result::Result<ImageConfig, String> {
    let mut config = validate_config(c).map_err(|m| format!("[config] {m}"))?;
    if let Some(u) = &config.user {
        // On a base, a name the recipe does not define may be the base's:
        // it is left for the engine to look up in the image's /etc/passwd.
        match resolve_config_user(u, users) {
            Ok(resolved) => config.user = Some(resolved),
            Err(_) if on_base => {}
            Err(m) => return Err(format!("[config] user {u:?}: {m}")),
        }
    }
    Ok(config)
}

/// `[base]`: a source for each platform, the modes, the paths to remove.
fn validate_base(b: RawBase, platforms: &[Platform]) -> std::result::Result<BaseSpec, String> {
    let image = match b.image {
        None => {
            return Err(
                "[base]: image is required (a source such as oci:DIR or REGISTRY/NAME:TAG)".into(),
            )
        }
        Some(RawBaseImage::One(s)) => {
            check_base_source(&s).map_err(|m| format!("[base] image {s:?}: {m}"))?;
            BaseImage::One(s)
        }
        Some(RawBaseImage::PerPlatform(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let p: Platform = k.parse().map_err(|e: Error| format!("[base] image: {e}"))?;
                if !platforms.contains(&p) {
                    return Err(format!(
                        "[base] image: {p} is not one of the recipe's platforms"
                    ));
                }
                check_base_source(&v).map_err(|m| format!("[base] image {p} {v:?}: {m}"))?;
                out.insert(p, v);
            }
            if let Some(p) = platforms.iter().find(|p| !out.contains_key(p)) {
                return Err(format!(
                    "[base] image: no base for the recipe's platform {p}"
                ));
            }
            BaseImage::PerPlatform(out)
        }
    };
    let libraries = match b.libraries.as_deref() {
        None | Some("base") => Libraries::Base,
        Some("recipe") => Libraries::Recipe,
        Some(other) => {
            return Err(format!(
                "[base] libraries {other:?}: must be \"base\" or \"recipe\""
            ))
        }
    };
    let mut remove = Vec::new();
    for r in &b.remove {
        if !r.starts_with('/') {
            return Err(format!("[base] remove {r:?}: must be an absolute path"));
        }
        let p = ImagePath::new(r).map_err(|m| format!("[base] remove {r:?}: {m}"))?;
        if p.rel().is_empty() {
            return Err(format!("[base] remove {r:?}: cannot remove the root"));
        }
        remove.push(p);
    }
    remove.sort();
    remove.dedup();
    Ok(BaseSpec {
        image,
        squash: b.squash.unwrap_or(false),
        config: b.config.unwrap_or(true),
        libraries,
        remove,
    })
}

/// Is this first component of a name a registry host, as Docker decides:
/// it has a dot or a port, or is `localhost`.
pub fn is_registry_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost"
}

/// The full reference `name:tag` stands for, normalized as Docker does:
/// `jq` → `docker.io/library/jq:latest`, `acme/jq` →
/// `docker.io/acme/jq:latest`; a name with a registry host keeps it.
pub fn full_reference(name: &str, tag: &str) -> String {
    match name.split_once('/') {
        Some((host, _)) if is_registry_host(host) => format!("{name}:{tag}"),
        Some(_) => format!("docker.io/{name}:{tag}"),
        None => format!("docker.io/library/{name}:{tag}"),
    }
}

/// A base source must name something; its scheme and shape are checked
/// when the build parses it (`base::Source`), before anything is read.
fn check_base_source(s: &str) -> std::result::Result<(), String> {
    if s.trim().is_empty() {
        return Err("empty".into());
    }
    Ok(())
}

/// An entry's `owner`, resolved through the image's users.
fn entry_owner(o: Option<&str>, users: Users) -> std::result::Result<Option<Owner>, String> {
    o.map(|o| resolve_owner(o, users)).transpose()
}

/// Validate the `i`th (from 0) `[[binary]]` (when `binary`) or `[[file]]`:
/// the same keys; only a binary's dest may default to /usr/bin/<name>.
fn copy_entry(
    i: usize,
    c: RawCopy,
    binary: bool,
    platforms: &[Platform],
    users: Users,
) -> std::result::Result<Entry, String> {
    let table = if binary { "[[binary]]" } else { "[[file]]" };
    let label = format!("{table} #{} ({})", i + 1, c.src);
    if !c.exclude.is_empty() {
        return Err(format!("{label}: exclude is only for [[tree]]"));
    }
    if !c.specials.is_empty() {
        return Err(format!("{label}: specials is only for [[tree]]"));
    }
    let (src, dest) = copy_paths(&c, platforms, binary).map_err(|m| format!("{label}: {m}"))?;
    let mode = parse_mode(c.mode.as_ref()).map_err(|m| format!("{label}: {m}"))?;
    let owner =
        entry_owner(c.owner.as_deref(), users).map_err(|m| format!("{label}: owner: {m}"))?;
    let xattrs = xattr_names(&c.xattrs).map_err(|m| format!("{label}: xattrs: {m}"))?;
    let kind = if binary {
        EntryKind::Binary {
            src,
            dest,
            mode,
            owner,
        }
    } else {
        EntryKind::File {
            src,
            dest,
            mode,
            owner,
        }
    };
    Ok(Entry {
        label,
        kind,
        xattrs,
    })
}

/// Validate the `i`th (from 0) `[[tree]]`: no mode, but exclude patterns
/// and special files.
fn tree_entry(
    i: usize,
    t: RawCopy,
    platforms: &[Platform],
    users: Users,
) -> std::result::Result<Entry, String> {
    let label = format!("[[tree]] #{} ({})", i + 1, t.src);
    if t.mode.is_some() {
        return Err(format!(
            "{label}: mode is not supported for a tree; its files keep normalized modes"
        ));
    }
    let (src, dest) = copy_paths(&t, platforms, false).map_err(|m| format!("{label}: {m}"))?;
    let owner =
        entry_owner(t.owner.as_deref(), users).map_err(|m| format!("{label}: owner: {m}"))?;
    let xattrs = xattr_names(&t.xattrs).map_err(|m| format!("{label}: xattrs: {m}"))?;
    for x in &t.exclude {
        if x.is_empty() || x.contains('\0') {
            return Err(format!("{label}: exclude patterns must be non-empty"));
        }
    }
    let specials = special_kinds(&t.specials).map_err(|m| format!("{label}: {m}"))?;
    Ok(Entry {
        label,
        kind: EntryKind::Tree {
            src,
            dest,
            owner,
            exclude: t.exclude,
            specials,
        },
        xattrs,
    })
}

/// A tree's `specials`: sorted, without duplicates.
fn special_kinds(names: &[String]) -> std::result::Result<Vec<SpecialKind>, String> {
    let mut specials = Vec::new();
    for name in names {
        let kind = SpecialKind::from_name(name).ok_or_else(|| {
            format!(
                "specials: {name:?} is not one of \"fifo\", \"char\", \"block\" \
                 (sockets cannot be stored in a layer)"
            )
        })?;
        if !specials.contains(&kind) {
            specials.push(kind);
        }
    }
    specials.sort();
    Ok(specials)
}

/// Validate the `i`th (from 0) `[[dir]]`.
fn dir_entry(i: usize, d: RawDir, users: Users) -> std::result::Result<Entry, String> {
    let label = format!("[[dir]] #{} ({})", i + 1, d.dest);
    let dest = ImagePath::new(&d.dest).map_err(|m| format!("{label}: dest {m}"))?;
    let mode = parse_mode(d.mode.as_ref()).map_err(|m| format!("{label}: {m}"))?;
    let owner =
        entry_owner(d.owner.as_deref(), users).map_err(|m| format!("{label}: owner: {m}"))?;
    Ok(Entry {
        label,
        kind: EntryKind::Dir { dest, mode, owner },
        xattrs: Vec::new(),
    })
}

/// Validate the `i`th (from 0) `[[symlink]]`.
fn symlink_entry(i: usize, s: RawSymlink) -> std::result::Result<Entry, String> {
    let label = format!("[[symlink]] #{} ({})", i + 1, s.dest);
    let dest = ImagePath::new(&s.dest).map_err(|m| format!("{label}: dest {m}"))?;
    if s.target.is_empty() || s.target.contains('\0') {
        return Err(format!(
            "{label}: target must be a non-empty path without NUL bytes"
        ));
    }
    Ok(Entry {
        label,
        kind: EntryKind::Symlink {
            dest,
            target: s.target,
        },
        xattrs: Vec::new(),
    })
}

/// Validate the `i`th (from 0) `[[library]]`: a soname or an absolute path.
fn library_entry(i: usize, l: RawLibrary) -> std::result::Result<Entry, String> {
    let label = format!("[[library]] #{} ({})", i + 1, l.name);
    let ok = !l.name.is_empty()
        && !l.name.contains('\0')
        && (l.name.starts_with('/') || !l.name.contains('/'));
    if !ok {
        return Err(format!(
            "{label}: name must be a soname (libfoo.so.1) or an absolute path in the sysroot"
        ));
    }
    Ok(Entry {
        label,
        kind: EntryKind::Library { name: l.name },
        xattrs: Vec::new(),
    })
}

/// `[sysroot]`: platform → directory, relative ones joined to `base`.
fn validate_sysroots(
    raw: BTreeMap<String, String>,
    base: &Path,
) -> std::result::Result<BTreeMap<Platform, PathBuf>, String> {
    let mut sysroots = BTreeMap::new();
    for (k, v) in raw {
        let p: Platform = k.parse().map_err(|e: Error| format!("[sysroot] {e}"))?;
        if v.is_empty() {
            return Err(format!("[sysroot] {p}: empty path"));
        }
        sysroots.insert(p, base.join(v));
    }
    Ok(sysroots)
}

/// The extended attributes a recipe entry may keep: file capabilities
/// (`security.capability`) and `user.*` attributes. SELinux labels belong
/// to the host's policy and are never copied; other namespaces are refused.
fn xattr_names(names: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let ok = n == "security.capability"
            || (n.len() > 5 && n.starts_with("user.") && !n.contains(['\0', '=', '\n']));
        if n == "security.selinux" {
            return Err(
                "security.selinux is never copied: SELinux labels come from the policy of the \
                 host that runs the image"
                    .into(),
            );
        }
        if !ok {
            return Err(format!(
                "{n:?} is not supported; only security.capability and user.* attributes are kept"
            ));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn validate_runtime(raw: &RawRecipe) -> std::result::Result<Runtime, String> {
    let users = if raw.users == Some(true) || !raw.user.is_empty() || !raw.group.is_empty() {
        if raw.users == Some(false) {
            return Err("users = false but [[user]] or [[group]] entries are given".into());
        }
        let (mut users, mut groups) = base_users();
        for g in &raw.group {
            check_account_name(&g.name).map_err(|m| format!("[[group]] {:?}: {m}", g.name))?;
            if let Some(old) = groups.iter().find(|x| x.name == g.name || x.gid == g.gid) {
                return Err(format!(
                    "[[group]] {:?}: name or gid {} already used by {:?}",
                    g.name, g.gid, old.name
                ));
            }
            groups.push(Group {
                name: g.name.clone(),
                gid: g.gid,
                members: g.members.clone(),
            });
        }
        for u in &raw.user {
            check_account_name(&u.name).map_err(|m| format!("[[user]] {:?}: {m}", u.name))?;
            if let Some(old) = users.iter().find(|x| x.name == u.name || x.uid == u.uid) {
                return Err(format!(
                    "[[user]] {:?}: name or uid {} already used by {:?}",
                    u.name, u.uid, old.name
                ));
            }
            let gid = u.gid.unwrap_or(u.uid);
            if !groups.iter().any(|g| g.gid == gid) {
                // A user's own group, as useradd makes it.
                groups.push(Group {
                    name: u.name.clone(),
                    gid,
                    members: Vec::new(),
                });
            }
            let home = u
                .home
                .clone()
                .unwrap_or_else(|| format!("/home/{}", u.name));
            if !home.starts_with('/') || home.contains(':') || home.contains('\n') {
                return Err(format!(
                    "[[user]] {:?}: home must be an absolute path",
                    u.name
                ));
            }
            let shell = u.shell.clone().unwrap_or_else(|| "/sbin/nologin".into());
            if shell.contains(':') || shell.contains('\n') {
                return Err(format!("[[user]] {:?}: invalid shell", u.name));
            }
            users.push(User {
                name: u.name.clone(),
                uid: u.uid,
                gid,
                home,
                shell,
            });
        }
        // Distroless's order for the base entries, then the recipe's own in
        // recipe order: deterministic either way.
        Some((users, groups))
    } else {
        None
    };
    let selection =
        |what: &str, v: &Option<RawSelection>| -> std::result::Result<Option<Selection>, String> {
            Ok(match v {
                None | Some(RawSelection::Flag(false)) => None,
                Some(RawSelection::Flag(true)) => Some(Selection::All),
                Some(RawSelection::List(l)) => {
                    for x in l {
                        if x.is_empty()
                            || x.starts_with('/')
                            || x.split('/').any(|c| c == ".." || c.is_empty())
                        {
                            return Err(format!("{what}: {x:?} is not a valid name"));
                        }
                    }
                    let mut l = l.clone();
                    l.sort();
                    l.dedup();
                    Some(Selection::Only(l))
                }
            })
        };
    let nss = raw.nss.clone().unwrap_or_default();
    for m in &nss {
        if m.is_empty()
            || !m
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("nss: {m:?} is not a module name"));
        }
    }
    let dlopen = match raw.dlopen.as_deref() {
        None | Some("recommended") => Some(crate::elf::DlopenPriority::Recommended),
        Some("required") => Some(crate::elf::DlopenPriority::Required),
        Some("suggested") => Some(crate::elf::DlopenPriority::Suggested),
        Some("none") => None,
        Some(other) => {
            return Err(format!(
                "dlopen {other:?}: must be \"none\", \"required\", \"recommended\" or \"suggested\""
            ))
        }
    };
    Ok(Runtime {
        users,
        ca_certificates: raw.ca_certificates.unwrap_or(false),
        tzdata: selection("tzdata", &raw.tzdata)?,
        nss,
        gconv: selection("gconv", &raw.gconv)?,
        libgcc_s: raw.libgcc_s,
        dlopen,
        tmp: raw.tmp.unwrap_or(true),
        ld_so_cache: raw.ld_so_cache,
    })
}

fn check_account_name(n: &str) -> std::result::Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
        && !n.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err("must be lowercase letters, digits, _ - . and not start with a digit".into())
    }
}

/// "uid:gid", "uid", "name" or "name:group" → numbers, names through the
/// recipe's users.
fn resolve_owner(
    spec: &str,
    users: Option<&(Vec<User>, Vec<Group>)>,
) -> std::result::Result<Owner, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let need_users = || format!("{spec:?} names an account; set users = true or add a [[user]]");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let (list, _) = users.ok_or_else(need_users)?;
            let user = list
                .iter()
                .find(|x| x.name == u)
                .ok_or_else(|| format!("no user {u:?} in the image's users"))?;
            (user.uid, Some(user.gid))
        }
    };
    let gid = match g {
        None => primary.unwrap_or(uid),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let (_, groups) = users.ok_or_else(need_users)?;
                groups
                    .iter()
                    .find(|x| x.name == g)
                    .ok_or_else(|| format!("no group {g:?} in the image's groups"))?
                    .gid
            }
        },
    };
    Ok(Owner { uid, gid })
}

/// `[config] user`: names the image knows become "uid:gid", so the runtime
/// needs no lookup; numbers stay as written.
fn resolve_config_user(
    spec: &str,
    users: Option<&(Vec<User>, Vec<Group>)>,
) -> std::result::Result<String, String> {
    let numeric = spec
        .split(':')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if numeric {
        return Ok(spec.to_string());
    }
    let o = resolve_owner(spec, users)?;
    Ok(format!("{}:{}", o.uid, o.gid))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Annotation keys are non-empty and printable; values hold no NUL.
fn check_annotations(map: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    for (k, v) in map {
        if k.is_empty() || k.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{k:?}: a key must be non-empty, without spaces or control characters"
            ));
        }
        if v.contains('\0') {
            return Err(format!("{k:?}: the value contains a NUL byte"));
        }
    }
    Ok(())
}

/// Image names follow the OCI distribution spec's repository name grammar,
/// optionally after a registry host (`ghcr.io/acme/jq`,
/// `127.0.0.1:5000/team/app`).
fn check_name(name: &str) -> std::result::Result<(), String> {
    let name = match name.split_once('/') {
        Some((host, rest)) if is_registry_host(host) => {
            let (h, port) = host.split_once(':').unwrap_or((host, ""));
            let host_ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b));
            let port_ok = port.is_empty() && !host.contains(':')
                || !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.len() <= 5;
            if !host_ok || !port_ok {
                return Err(format!("registry host {host:?}: must be HOST or HOST:PORT"));
            }
            rest
        }
        _ => name,
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if name.len() > 255 || !name.split('/').all(component_ok) {
        return Err("must be lowercase letters, digits and . _ - separated by /, starting and ending with a letter or digit".into());
    }
    Ok(())
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}".into())
    }
}

fn copy_paths(
    c: &RawCopy,
    platforms: &[Platform],
    binary: bool,
) -> std::result::Result<(SrcSpec, ImagePath), String> {
    let spec = match &c.src {
        RawSrc::One(t) => SrcSpec::One(t.clone()),
        RawSrc::PerPlatform(m) => {
            let mut by = BTreeMap::new();
            for (k, v) in m {
                let p: Platform = k.parse().map_err(|e: Error| e.to_string())?;
                if !platforms.contains(&p) {
                    return Err(format!("src names {p}, which is not in platforms"));
                }
                by.insert(p, v.clone());
            }
            if let Some(p) = platforms.iter().find(|p| !by.contains_key(*p)) {
                return Err(format!("src has no entry for {p}"));
            }
            SrcSpec::PerPlatform(by)
        }
    };
    for t in spec.templates() {
        check_template(t)?;
    }
    let dest = match &c.dest {
        Some(d) => d.clone(),
        None => {
            let templates = spec.templates();
            let first = templates[0];
            let same = templates.iter().all(|t| t == &first);
            let plain = !first.contains('{');
            let name = Path::new(first.as_str())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.contains('{'));
            let same_name = templates.iter().all(|t| {
                Path::new(t.as_str())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    == name
            });
            if first.starts_with('/') && same && plain {
                first.clone()
            } else if binary && name.is_some() && same_name {
                format!("/usr/bin/{}", name.unwrap_or_default())
            } else {
                return Err(
                    "dest is required when src is relative, per platform or a template".into(),
                );
            }
        }
    };
    let dest = ImagePath::new(&dest).map_err(|m| format!("dest {m}"))?;
    Ok((spec, dest))
}

fn parse_mode(m: Option<&RawMode>) -> std::result::Result<Option<u32>, String> {
    let v = match m {
        None => return Ok(None),
        Some(RawMode::Text(s)) => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(format!("mode {s:?}: must be octal digits, e.g. \"0755\""));
            }
            u32::from_str_radix(digits, 8).map_err(|_| format!("mode {s:?}: too large"))?
        }
        Some(RawMode::Number(n)) => {
            u32::try_from(*n).map_err(|_| format!("mode {n}: out of range"))?
        }
    };
    if v > 0o7777 {
        return Err(format!("mode {v:o}: larger than 07777"));
    }
    Ok(Some(v))
}

fn validate_config(c: RawConfig) -> std::result::Result<ImageConfig, String> {
    let env_given = c.env.is_some();
    let env = c.env.unwrap_or_else(|| vec![DEFAULT_PATH.to_string()]);
    let mut keys = BTreeSet::new();
    for e in &env {
        let Some((k, _)) = e.split_once('=') else {
            return Err(format!("env {e:?}: must be KEY=VALUE"));
        };
        if k.is_empty() || k.contains('\0') {
            return Err(format!("env {e:?}: empty or invalid variable name"));
        }
        if !keys.insert(k.to_string()) {
            return Err(format!("env: {k} is set twice"));
        }
    }
    if let Some(w) = &c.workdir {
        if !w.starts_with('/') {
            return Err(format!("workdir {w:?}: must be an absolute path"));
        }
    }
    if let Some(u) = &c.user {
        if u.is_empty() || u.contains('\0') {
            return Err("user: must be a non-empty user[:group]".into());
        }
    }
    let mut ports = BTreeSet::new();
    for p in c.exposed_ports {
        let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
        let ok_num = num.parse::<u16>().map(|n| n > 0).unwrap_or(false);
        if !ok_num || !["tcp", "udp", "sctp"].contains(&proto) {
            return Err(format!(
                "exposed_ports {p:?}: must be PORT[/tcp|udp|sctp] with PORT in 1..65535"
            ));
        }
        ports.insert(format!("{num}/{proto}"));
    }
    for arr in [&c.entrypoint, &c.cmd].into_iter().flatten() {
        if arr.iter().any(|a| a.contains('\0')) {
            return Err("entrypoint and cmd must not contain NUL bytes".into());
        }
    }
    let mut volumes = BTreeSet::new();
    for v in c.volumes.iter().flatten() {
        if !v.starts_with('/') || v.contains('\0') {
            return Err(format!("volumes {v:?}: must be an absolute path"));
        }
        volumes.insert(v.clone());
    }
    let set = [
        ("entrypoint", c.entrypoint.is_some()),
        ("cmd", c.cmd.is_some()),
        ("env", env_given),
        ("workdir", c.workdir.is_some()),
        ("user", c.user.is_some()),
        ("labels", !c.labels.is_empty()),
        ("exposed_ports", !ports.is_empty()),
        ("stop_signal", c.stop_signal.is_some()),
        ("volumes", c.volumes.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, given)| given.then_some(k))
    .collect();
    Ok(ImageConfig {
        volumes,
        set,
        entrypoint: c.entrypoint,
        cmd: c.cmd,
        env,
        workdir: c.workdir,
        user: c.user,
        labels: c.labels,
        exposed_ports: ports,
        stop_signal: c.stop_signal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Recipe> {
        Recipe::parse(t, Path::new("dir/r.toml"))
    }

    #[test]
    fn full_names_and_annotations() {
        assert_eq!(
            full_reference("jq", "latest"),
            "docker.io/library/jq:latest"
        );
        assert_eq!(full_reference("acme/jq", "1"), "docker.io/acme/jq:1");
        assert_eq!(full_reference("ghcr.io/acme/jq", "1"), "ghcr.io/acme/jq:1");
        assert_eq!(
            full_reference("127.0.0.1:5000/team/app", "v2"),
            "127.0.0.1:5000/team/app:v2"
        );
        assert_eq!(full_reference("localhost/app", "x"), "localhost/app:x");
        for ok in [
            "ghcr.io/acme/jq",
            "127.0.0.1:5000/team/app",
            "localhost/app",
        ] {
            assert!(parse(&format!("name = {ok:?}")).is_ok(), "{ok}");
        }
        for bad in ["host:port/x", "127.0.0.1:99999999/x", "ghcr.io/Acme"] {
            let e = parse(&format!("name = {bad:?}")).unwrap_err().to_string();
            assert!(e.contains("name"), "{bad}: {e}");
        }
        let r = parse(
            "name = \"x\"\n[annotations]\n\"org.example.a\" = \"1\"\n\
             [index_annotations]\n\"org.example.b\" = \"2\"\n",
        )
        .unwrap();
        assert_eq!(r.annotations["org.example.a"], "1");
        assert_eq!(r.index_annotations["org.example.b"], "2");
        let e = parse("name = \"x\"\n[annotations]\n\"a b\" = \"1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[annotations]") && e.contains("a b"), "{e}");
    }

    #[test]
    fn defaults() {
        let r = parse(
            "name = \"x\"\n[[binary]]\nsrc = \"/usr/bin/jq\"\n[[binary]]\nsrc = \"out/app\"\n",
        )
        .unwrap();
        assert_eq!(r.tag, "latest");
        assert_eq!(r.platforms, vec![Platform::host()]);
        assert_eq!(r.config.env, vec![DEFAULT_PATH.to_string()]);
        match &r.entries[1].kind {
            EntryKind::Binary { src, dest, .. } => {
                let host = Platform::host();
                assert_eq!(
                    src.resolve(&host, "t", &r.base).unwrap(),
                    Source::Host(PathBuf::from("dir/out/app"))
                );
                assert_eq!(dest.as_str(), "/usr/bin/app");
            }
            _ => panic!(),
        }
    }

    #[test]
    fn errors_name_key_and_position() {
        let e = parse("name = \"x\"\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("line 2, column 1") && e.contains("bogus"), "{e}");
        let e = parse("name = \"x\"\n[[dir]]\ndest = \"../../etc\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[[dir]] #1") && e.contains("escapes"), "{e}");
        let e = parse("name = \"x\"\n[[dir]]\ndest = \"/a/.wh.b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("whiteout"), "{e}");
        let e = parse("name = \"x\"\n[[file]]\nsrc = \"a\"\ndest = \"/a\"\nmode = \"0999\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("octal"), "{e}");
        assert!(parse("name = \"X\"\n").is_err());
        assert!(parse("name = \"x\"\nepoch = -1\n").is_err());
    }

    #[test]
    fn image_paths() {
        assert_eq!(
            ImagePath::new("usr//bin/./x").unwrap().as_str(),
            "/usr/bin/x"
        );
        assert_eq!(ImagePath::new("/a/b/../c").unwrap().as_str(), "/a/c");
        assert!(ImagePath::new("/").is_err());
        assert!(ImagePath::new("").is_err());
        assert!(ImagePath::new("/a\0b").is_err());
        assert_eq!(
            ImagePath::new("/a/b").unwrap().parent().unwrap().as_str(),
            "/a"
        );
        assert_eq!(ImagePath::new("/a").unwrap().parent(), None);
    }
}
