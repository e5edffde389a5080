//! `bareroot why`: the chain that put a path in an image — from a recipe
//! entry or profile through PT_INTERP, DT_NEEDED (found via RPATH, RUNPATH,
//! ld.so.conf or a default directory) and `.note.dlopen`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::loader::closure::{Dep, Resolver};
use crate::loader::symbols::Checked;
use crate::loader::sysroot::{self, Fs, HostFs, Node};
use crate::loader::Loader;
use crate::oci::apply::{EntryKind, Tree};
use crate::oci::{FoundImage, Layout};
use crate::plan::packages;
use crate::plan::{Item, ItemKind, Lower, Plan};
use crate::platform::Platform;
use crate::recipe::ImagePath;
use crate::toolchain::Toolchains;

/// Explain `target` (an absolute path in the image).
pub fn explain(
    plan: &Plan,
    closures: &[Checked],
    resolver: &Resolver,
    target: &str,
    base: Option<&dyn Lower>,
) -> Result<String> {
    let path = ImagePath::new(target).map_err(Error::msg)?;
    let Some(item) = plan.entries.get(&path) else {
        return match base.filter(|b| b.lower(&path).is_some() || b.read(&path).is_some()) {
            Some(b) => Ok(from_base(closures, resolver, &path, b)),
            None => Err(Error::msg("not in the image")),
        };
    };
    let kind = match &item.kind {
        ItemKind::Dir => "directory",
        ItemKind::Symlink { .. } => "symlink",
        ItemKind::HardLink { .. } => "hard link",
        ItemKind::File { .. } | ItemKind::Data { .. } => "file",
        ItemKind::Special { kind, .. } => kind.name(),
    };
    let mut out = format!("{path} ({kind}) is in the image because:\n");
    let mut found = false;
    for c in closures {
        for dep in c.closure.interpreter.iter().chain(&c.closure.libraries) {
            if !places(resolver, dep, path.as_path()) {
                continue;
            }
            found = true;
            out.push_str(&format!("  {}\n", c.label));
            for step in chain(c, dep) {
                out.push_str(&format!("    {step}\n"));
            }
            break;
        }
    }
    if !found {
        out.push_str(&format!("  {}\n", item.why));
    }
    Ok(out)
}

/// A path the base has: named as the base's, with the closures that use
/// it from there.
fn from_base(
    closures: &[Checked],
    resolver: &Resolver,
    path: &ImagePath,
    base: &dyn Lower,
) -> String {
    let mut out = format!("{path} is in the image from the base {}", base.name());
    let mut users = String::new();
    for c in closures {
        for dep in c.closure.interpreter.iter().chain(&c.closure.libraries) {
            if places(resolver, dep, path.as_path()) {
                users.push_str(&format!(
                    "  {}
",
                    c.label
                ));
                for step in chain(c, dep) {
                    users.push_str(&format!(
                        "    {step}
"
                    ));
                }
                break;
            }
        }
    }
    if users.is_empty() {
        out.push('\n');
    } else {
        out.push_str(", and is used from there by:\n");
        out.push_str(&users);
    }
    out
}

/// Does the image entry `target` come from placing `dep` (its file, or a
/// symlink the loader follows to it)?
fn places(resolver: &Resolver, dep: &Dep, target: &Path) -> bool {
    if dep.image_path == target || dep.real == target {
        return true;
    }
    if dep.image_path != sysroot::normalize(&dep.path) {
        return false;
    }
    sysroot::resolve(resolver.fs(dep.side), &dep.path)
        .map(|r| r.links.iter().any(|l| l.at == target))
        .unwrap_or(false)
}

/// The steps from the root object to `dep`, outermost first.
fn chain(c: &Checked, dep: &Dep) -> Vec<String> {
    let mut steps = Vec::new();
    let mut cur = dep;
    let mut guard = 0;
    loop {
        steps.push(format!(
            "{} needs {} ({}) → {}{}",
            cur.needed_by.display(),
            cur.name,
            cur.via.as_str(),
            cur.path.display(),
            if cur.real != cur.path {
                format!(" = {}", cur.real.display())
            } else {
                String::new()
            }
        ));
        guard += 1;
        if cur.needed_by == c.root || guard > 64 {
            break;
        }
        let parent: Option<&Dep> = c
            .closure
            .interpreter
            .iter()
            .chain(&c.closure.libraries)
            .find(|d| d.path == cur.needed_by);
        match parent {
            Some(p) => cur = p,
            None => break,
        }
    }
    steps.reverse();
    steps
}

/// Explain `target` in one image of a layout: its layers are applied, its
/// programs' closures are resolved inside it, and its package metadata
/// names the packages its scanner files came from.
pub fn explain_image(
    layout: &Layout,
    image: &FoundImage,
    toolchains: &Toolchains,
    target: &str,
) -> Result<String> {
    let p: Platform = image.platform.display().parse()?;
    let toolchain = toolchains.get(&p)?;
    let tmp = tempfile::Builder::new()
        .prefix("bareroot-why-")
        .tempdir()
        .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| Error::io("create directory", &rootfs, e))?;
    let tree = layout.unpack_image(image, &rootfs)?;
    let loader = Loader::of_rootfs(toolchain, &rootfs);
    let resolver = loader.resolver();
    let closures = image_closures(&resolver, &rootfs);
    let mut plan = plan_of(
        &tree,
        "placed by the recipe; no program in the image loads it",
    );
    name_package_files(&mut plan, &rootfs);
    explain(&plan, &closures, &resolver, target, None)
}

/// A plan listing what an applied image holds, with the layers' own kinds,
/// modes and owners (hard links and special files included, which the
/// unpacked directory alone cannot tell).
fn plan_of(tree: &Tree, why: &str) -> Plan {
    let mut plan = Plan::default();
    for (path, e) in tree.entries() {
        let kind = match &e.kind {
            EntryKind::Dir => ItemKind::Dir,
            EntryKind::File { size } => ItemKind::File {
                src: tree.host_path(path),
                size: *size,
            },
            EntryKind::Symlink { target } => ItemKind::Symlink {
                target: target.clone(),
            },
            EntryKind::HardLink { target } => ItemKind::HardLink {
                target: target.clone(),
            },
            EntryKind::Special { kind, major, minor } => ItemKind::Special {
                kind: *kind,
                major: *major,
                minor: *minor,
            },
        };
        let mut item = Item::new(kind, e.mode, why);
        item.uid = e.uid;
        item.gid = e.gid;
        plan.entries.insert(path.clone(), item);
    }
    plan
}

/// Say which package put each scanner file of an unpacked image there, as
/// the image's own dpkg metadata tells: `status.d/<package>` and its
/// `.md5sums` list, and the files that list names which package metadata
/// adds (the copyright files, `/etc/os-release`). The image does not record
/// which entries its recipe named itself, so a copyright file or an
/// os-release the recipe placed is named as its package's.
///
/// The image is untrusted: every lookup resolves inside the rootfs (its
/// symlinks never reach the host), only regular files are read, and each
/// list is read up to [`MAX_LIST`] bytes.
fn name_package_files(plan: &mut Plan, rootfs: &Path) {
    let fs = HostFs::new(rootfs);
    let regular = |p: &Path| {
        sysroot::resolve(&fs, p)
            .ok()
            .filter(|r| matches!(r.node, Node::File { .. }))
            .map(|r| r.real)
    };
    let Ok(dir) = sysroot::resolve(&fs, Path::new(packages::STATUS_D)) else {
        return;
    };
    let Ok(mut names) = fs.read_dir(&dir.real) else {
        return;
    };
    names.sort();
    let mut set = |at: &str, why: String| {
        if let Some(item) = ImagePath::new(at)
            .ok()
            .and_then(|p| plan.entries.get_mut(&p))
        {
            item.why = why;
        }
    };
    for name in &names {
        let at = format!("{}/{name}", packages::STATUS_D);
        let Some(real) = regular(Path::new(&at)) else {
            continue;
        };
        let Some(package) = name.strip_suffix(".md5sums") else {
            set(&at, packages::status_why(name));
            continue;
        };
        set(&at, packages::md5sums_why(package));
        let Ok(list) = fs.read(&real, MAX_LIST) else {
            continue;
        };
        let list = String::from_utf8_lossy(&list);
        let bare = package.split(':').next().unwrap_or(package);
        for path in list
            .lines()
            .filter_map(|l| l.split_once("  ").map(|(_, p)| p))
        {
            if path == format!("usr/share/doc/{bare}/copyright") {
                set(path, packages::copyright_why(bare));
            } else if path == "etc/os-release" {
                set(path, packages::os_release_why(Some(bare)));
            }
        }
    }
}

/// The longest md5sums list [`name_package_files`] reads.
const MAX_LIST: u64 = 16 << 20;

/// Analyze an unpacked image as its own sysroot: every ELF program in it,
/// as roots, for `explain`.
pub fn image_closures(resolver: &Resolver, rootfs: &Path) -> Vec<Checked> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(rootfs)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        if !e.file_type().is_file() {
            continue;
        }
        let Ok(rel) = e.path().strip_prefix(rootfs) else {
            continue;
        };
        let path = PathBuf::from("/").join(rel);
        let Ok(info) = resolver.parse(crate::loader::closure::Side::Sysroot, &path) else {
            continue;
        };
        if info.interpreter.is_none() {
            continue;
        }
        let root = crate::loader::closure::Root {
            side: crate::loader::closure::Side::Sysroot,
            path: path.clone(),
            image_path: path.clone(),
        };
        if let Ok(closure) = resolver.closure(&root) {
            out.push(Checked {
                label: format!("the program {}", path.display()),
                root_side: crate::loader::closure::Side::Sysroot,
                root: path,
                closure,
            });
        }
    }
    out
}
