//! `closure::Resolver` against in-memory sysroots built from synthetic ELF
//! files: the search order and bookkeeping of glibc's `ld.so`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bareroot::loader::closure::{Closure, Dep, LoaderConfig, Missing, Resolver, Root, Side, Via};
use bareroot::loader::sysroot::{Fs, HostFs, MemFs, Node};

use crate::elfgen::{ElfSpec, EM_386, EM_AARCH64};

const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";
const MULTIARCH: &str = "/lib/x86_64-linux-gnu";

fn config() -> LoaderConfig {
    LoaderConfig {
        default_dirs: [
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib",
            "/usr/lib",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect(),
        lib: "lib/x86_64-linux-gnu".into(),
        platform: "x86_64".into(),
        flags_mask: 0,
        flags: 0,
        dlopen: Some(bareroot::elf::DlopenPriority::Recommended),
    }
}

fn put(fs: &mut MemFs, path: &str, spec: ElfSpec) {
    fs.file(path, spec.bytes());
}

fn root_at(side: Side, path: &str, image_path: &str) -> Root {
    Root {
        side,
        path: path.into(),
        image_path: image_path.into(),
    }
}

/// The closure of the sysroot object `path`, placed at the same path in the
/// image; `fs` serves as both sysroot and host.
fn closure(fs: &dyn Fs, path: &str) -> Closure {
    closure_of(fs, &root_at(Side::Sysroot, path, path))
}

fn closure_of(fs: &dyn Fs, root: &Root) -> Closure {
    Resolver::new(fs, fs, config()).closure(root).unwrap()
}

/// A sysroot-side dependency whose image path is its path.
fn dep(name: &str, path: &str, real: &str, needed_by: &str, via: Via) -> Dep {
    dep_in_image(name, path, real, path, needed_by, via)
}

fn dep_in_image(
    name: &str,
    path: &str,
    real: &str,
    image_path: &str,
    needed_by: &str,
    via: Via,
) -> Dep {
    Dep {
        name: name.into(),
        side: Side::Sysroot,
        path: path.into(),
        real: real.into(),
        image_path: image_path.into(),
        needed_by: needed_by.into(),
        via,
    }
}

/// A library found in a default directory under its own name, no symlinks.
fn default_dep(name: &str, dir: &str, needed_by: &str) -> Dep {
    let path = format!("{dir}/{name}");
    dep(name, &path, &path, needed_by, Via::DefaultDir)
}

fn missing(name: &str, needed_by: &str) -> Missing {
    Missing {
        name: name.into(),
        needed_by: needed_by.into(),
    }
}

fn names(c: &Closure) -> Vec<&str> {
    c.libraries.iter().map(|d| d.name.as_str()).collect()
}

// ---------------------------------------------------------------------------
// DT_RPATH and DT_RUNPATH

#[test]
fn resolver_rpath_is_inherited_down_the_chain() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().rpath("/opt/rp").needs(&["liba.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/liba.so.1",
        ElfSpec::lib("liba.so.1").needs(&["libb.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/libb.so.1",
        ElfSpec::lib("libb.so.1").needs(&["libc.so.6"]),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6"),
    );

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(c.interpreter, None);
    assert_eq!(
        c.libraries,
        [
            dep(
                "liba.so.1",
                "/opt/rp/liba.so.1",
                "/opt/rp/liba.so.1",
                "/app/bin/app",
                Via::Rpath
            ),
            // Only the executable's DT_RPATH names /opt/rp: inherited.
            dep(
                "libb.so.1",
                "/opt/rp/libb.so.1",
                "/opt/rp/libb.so.1",
                "/opt/rp/liba.so.1",
                Via::Rpath
            ),
            default_dep("libc.so.6", MULTIARCH, "/opt/rp/libb.so.1"),
        ]
    );
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_own_rpath_is_searched_before_the_loaders() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().rpath("/opt/rp").needs(&["liba.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/liba.so.1",
        ElfSpec::lib("liba.so.1")
            .rpath("/opt/a")
            .needs(&["libb.so.1"]),
    );
    put(&mut fs, "/opt/rp/libb.so.1", ElfSpec::lib("libb.so.1"));
    put(&mut fs, "/opt/a/libb.so.1", ElfSpec::lib("libb.so.1"));

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(
        c.libraries[1],
        dep(
            "libb.so.1",
            "/opt/a/libb.so.1",
            "/opt/a/libb.so.1",
            "/opt/rp/liba.so.1",
            Via::Rpath
        )
    );
    assert_eq!(c.libraries.len(), 2);
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_runpath_applies_only_to_direct_dependencies() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().runpath("/opt/rp").needs(&["liba.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/liba.so.1",
        ElfSpec::lib("liba.so.1").needs(&["libb.so.1", "libc.so.6"]),
    );
    put(&mut fs, "/opt/rp/libb.so.1", ElfSpec::lib("libb.so.1"));
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6"),
    );

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(
        c.libraries,
        [
            dep(
                "liba.so.1",
                "/opt/rp/liba.so.1",
                "/opt/rp/liba.so.1",
                "/app/bin/app",
                Via::Runpath
            ),
            default_dep("libc.so.6", MULTIARCH, "/opt/rp/liba.so.1"),
        ]
    );
    // libb.so.1 is reachable only through the executable's DT_RUNPATH.
    assert_eq!(c.missing, [missing("libb.so.1", "/opt/rp/liba.so.1")]);
}

#[test]
fn resolver_rpath_is_ignored_when_runpath_is_present() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe()
            .rpath("/opt/rp")
            .runpath("/opt/ru")
            .needs(&["libboth.so.1", "libonlyrp.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/libboth.so.1",
        ElfSpec::lib("libboth.so.1").needs(&["libdeep.so.1"]),
    );
    put(
        &mut fs,
        "/opt/ru/libboth.so.1",
        ElfSpec::lib("libboth.so.1").needs(&["libdeep.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/libonlyrp.so.1",
        ElfSpec::lib("libonlyrp.so.1"),
    );
    put(
        &mut fs,
        "/opt/rp/libdeep.so.1",
        ElfSpec::lib("libdeep.so.1"),
    );

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(
        c.libraries,
        [dep(
            "libboth.so.1",
            "/opt/ru/libboth.so.1",
            "/opt/ru/libboth.so.1",
            "/app/bin/app",
            Via::Runpath
        )]
    );
    // The executable's DT_RPATH is dropped entirely: not searched for its own
    // dependencies, nor inherited by libboth's.
    assert_eq!(
        c.missing,
        [
            missing("libonlyrp.so.1", "/app/bin/app"),
            missing("libdeep.so.1", "/opt/ru/libboth.so.1"),
        ]
    );
}

#[test]
fn resolver_runpath_of_the_requester_disables_inherited_rpath() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().rpath("/opt/rp").needs(&["liba.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/liba.so.1",
        ElfSpec::lib("liba.so.1")
            .runpath("/opt/ru")
            .needs(&["libb.so.1", "libc.so.6"]),
    );
    put(&mut fs, "/opt/rp/libb.so.1", ElfSpec::lib("libb.so.1"));
    put(
        &mut fs,
        "/opt/ru/libc.so.6",
        ElfSpec::lib("libc.so.6").needs(&["libdeep.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/libdeep.so.1",
        ElfSpec::lib("libdeep.so.1"),
    );

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(
        c.libraries,
        [
            dep(
                "liba.so.1",
                "/opt/rp/liba.so.1",
                "/opt/rp/liba.so.1",
                "/app/bin/app",
                Via::Rpath
            ),
            dep(
                "libc.so.6",
                "/opt/ru/libc.so.6",
                "/opt/ru/libc.so.6",
                "/opt/rp/liba.so.1",
                Via::Runpath
            ),
            // libc has no DT_RUNPATH, so the chain libc -> liba -> app is
            // walked: liba contributes nothing (its DT_RPATH, had it one, is
            // void beside its DT_RUNPATH), the executable /opt/rp.
            dep(
                "libdeep.so.1",
                "/opt/rp/libdeep.so.1",
                "/opt/rp/libdeep.so.1",
                "/opt/ru/libc.so.6",
                Via::Rpath
            ),
        ]
    );
    // glibc walks the DT_RPATH chain only when the requesting object has no
    // DT_RUNPATH (`loader->l_info[DT_RUNPATH] == NULL` in _dl_map_object).
    assert_eq!(c.missing, [missing("libb.so.1", "/opt/rp/liba.so.1")]);
}

/// An empty DT_RUNPATH (what e.g. `patchelf --set-rpath ''` leaves behind)
/// still exists as far as ld.so is concerned: `_dl_map_object` tests
/// `loader->l_info[DT_RUNPATH] == NULL`, not the string, so the DT_RPATH
/// chain is not searched for this object's dependencies.
#[test]
fn resolver_empty_runpath_still_disables_inherited_rpath() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().rpath("/opt/rp").needs(&["liba.so.1"]),
    );
    put(
        &mut fs,
        "/opt/rp/liba.so.1",
        ElfSpec::lib("liba.so.1").runpath("").needs(&["libb.so.1"]),
    );
    put(&mut fs, "/opt/rp/libb.so.1", ElfSpec::lib("libb.so.1"));

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(names(&c), ["liba.so.1"]);
    assert_eq!(c.missing, [missing("libb.so.1", "/opt/rp/liba.so.1")]);
}

#[test]
fn resolver_expands_lib_and_platform() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe()
            .rpath("/opt/$LIB:/opt/${PLATFORM}/lib")
            .needs(&["liba.so", "libb.so"]),
    );
    put(
        &mut fs,
        "/opt/lib/x86_64-linux-gnu/liba.so",
        ElfSpec::default(),
    );
    put(&mut fs, "/opt/x86_64/lib/libb.so", ElfSpec::default());

    let c = closure(&fs, "/app/bin/app");
    let a = "/opt/lib/x86_64-linux-gnu/liba.so";
    let b = "/opt/x86_64/lib/libb.so";
    assert_eq!(
        c.libraries,
        [
            dep("liba.so", a, a, "/app/bin/app", Via::Rpath),
            dep("libb.so", b, b, "/app/bin/app", Via::Rpath),
        ]
    );
    assert_eq!(c.missing, []);
}

// ---------------------------------------------------------------------------
// $ORIGIN

#[test]
fn resolver_origin_expansion_and_image_relocation() {
    let mut fs = MemFs::new();
    // The root is opened through a symlink; its $ORIGIN is its real
    // directory (ld.so takes it from /proc/self/exe).
    fs.symlink("/usr/bin/app", "/opt/app/bin/app");
    put(
        &mut fs,
        "/opt/app/bin/app",
        ElfSpec::exe()
            .runpath("$ORIGIN/../lib:${ORIGIN}/../lib2:/opt/shared")
            .needs(&["libone.so", "libtwo.so", "libthree.so", "libc.so.6"]),
    );
    put(
        &mut fs,
        "/opt/app/lib/libone.so",
        ElfSpec::lib("libone.so")
            .runpath("$ORIGIN")
            .needs(&["libfour.so"]),
    );
    put(
        &mut fs,
        "/opt/app/lib/libfour.so",
        ElfSpec::lib("libfour.so"),
    );
    put(
        &mut fs,
        "/opt/app/lib2/libtwo.so",
        ElfSpec::lib("libtwo.so"),
    );
    put(
        &mut fs,
        "/opt/shared/libthree.so",
        ElfSpec::lib("libthree.so"),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6"),
    );

    let root = root_at(Side::Sysroot, "/usr/bin/app", "/srv/app/bin/app");
    let c = closure_of(&fs, &root);
    assert_eq!(
        c.libraries,
        [
            // Opened by the unnormalized name ld.so builds (dir + name); the
            // image path follows the root to /srv/app.
            dep_in_image(
                "libone.so",
                "/opt/app/bin/../lib/libone.so",
                "/opt/app/lib/libone.so",
                "/srv/app/lib/libone.so",
                "/usr/bin/app",
                Via::Runpath
            ),
            dep_in_image(
                "libtwo.so",
                "/opt/app/bin/../lib2/libtwo.so",
                "/opt/app/lib2/libtwo.so",
                "/srv/app/lib2/libtwo.so",
                "/usr/bin/app",
                Via::Runpath
            ),
            // No $ORIGIN: stays where it is.
            dep(
                "libthree.so",
                "/opt/shared/libthree.so",
                "/opt/shared/libthree.so",
                "/usr/bin/app",
                Via::Runpath
            ),
            default_dep("libc.so.6", MULTIARCH, "/usr/bin/app"),
            // libone's $ORIGIN is the directory it was opened from.
            dep_in_image(
                "libfour.so",
                "/opt/app/bin/../lib/libfour.so",
                "/opt/app/lib/libfour.so",
                "/srv/app/lib/libfour.so",
                "/opt/app/bin/../lib/libone.so",
                Via::Runpath
            ),
        ]
    );
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_inherited_rpath_origin_is_the_owners() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/opt/app/bin/app",
        ElfSpec::exe().rpath("$ORIGIN/../lib").needs(&["liba.so"]),
    );
    put(
        &mut fs,
        "/opt/app/lib/liba.so",
        ElfSpec::lib("liba.so").needs(&["libb.so"]),
    );
    put(&mut fs, "/opt/app/lib/libb.so", ElfSpec::lib("libb.so"));

    let root = root_at(Side::Sysroot, "/opt/app/bin/app", "/app/bin/app");
    let c = closure_of(&fs, &root);
    assert_eq!(
        c.libraries,
        [
            dep_in_image(
                "liba.so",
                "/opt/app/bin/../lib/liba.so",
                "/opt/app/lib/liba.so",
                "/app/lib/liba.so",
                "/opt/app/bin/app",
                Via::Rpath
            ),
            // The executable's DT_RPATH, with the executable's $ORIGIN (not
            // liba's, which would give ".../lib/../lib/libb.so").
            dep_in_image(
                "libb.so",
                "/opt/app/bin/../lib/libb.so",
                "/opt/app/lib/libb.so",
                "/app/lib/libb.so",
                "/opt/app/bin/../lib/liba.so",
                Via::Rpath
            ),
        ]
    );
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_origin_of_a_host_root_stays_on_the_host() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/build/out/app",
        ElfSpec::exe()
            .runpath("$ORIGIN")
            .needs(&["libhelper.so", "libc.so.6"]),
    );
    put(
        &mut fs,
        "/build/out/libhelper.so",
        ElfSpec::lib("libhelper.so"),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6"),
    );

    let root = root_at(Side::Host, "/build/out/app", "/usr/local/bin/app");
    let c = closure_of(&fs, &root);
    assert_eq!(
        c.libraries,
        [
            Dep {
                side: Side::Host,
                ..dep_in_image(
                    "libhelper.so",
                    "/build/out/libhelper.so",
                    "/build/out/libhelper.so",
                    "/usr/local/bin/libhelper.so",
                    "/build/out/app",
                    Via::Runpath
                )
            },
            default_dep("libc.so.6", MULTIARCH, "/build/out/app"),
        ]
    );
    assert_eq!(c.missing, []);
}

/// glibc expands dynamic string tokens in DT_NEEDED too (`expand_dst` in
/// elf/dl-deps.c), so "$ORIGIN/../lib/libx.so" is opened as a path relative
/// to the needing object's directory.
#[test]
fn resolver_origin_in_dt_needed() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/opt/app/bin/app",
        ElfSpec::exe().needs(&["$ORIGIN/../lib/libx.so"]),
    );
    put(&mut fs, "/opt/app/lib/libx.so", ElfSpec::default());

    let root = root_at(Side::Sysroot, "/opt/app/bin/app", "/srv/app/bin/app");
    let c = closure_of(&fs, &root);
    assert_eq!(c.missing, []);
    assert_eq!(
        c.libraries,
        [dep_in_image(
            "$ORIGIN/../lib/libx.so",
            "/opt/app/bin/../lib/libx.so",
            "/opt/app/lib/libx.so",
            "/srv/app/lib/libx.so",
            "/opt/app/bin/app",
            Via::Path
        )]
    );
}

#[test]
fn resolver_absolute_path_in_dt_needed() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().needs(&["/opt/x/libx.so", "/opt/x/libgone.so"]),
    );
    put(&mut fs, "/opt/x/libx.so", ElfSpec::default());

    let c = closure(&fs, "/app/bin/app");
    assert_eq!(
        c.libraries,
        [dep(
            "/opt/x/libx.so",
            "/opt/x/libx.so",
            "/opt/x/libx.so",
            "/app/bin/app",
            Via::Path
        )]
    );
    assert_eq!(c.missing, [missing("/opt/x/libgone.so", "/app/bin/app")]);
}

// ---------------------------------------------------------------------------
// /etc/ld.so.conf

fn conf_sysroot() -> MemFs {
    let mut fs = MemFs::new();
    fs.file(
        "/etc/ld.so.conf",
        "# libraries of local packages\ninclude /etc/ld.so.conf.d/*.conf\n\n/opt/main # trailing comment\n",
    )
    .file("/etc/ld.so.conf.d/b.conf", "/opt/b\n")
    .file(
        "/etc/ld.so.conf.d/a.conf",
        "# /opt/commented\n  /opt/a  \n",
    )
    .file("/etc/ld.so.conf.d/c.conf.disabled", "/opt/disabled\n");
    fs
}

#[test]
fn resolver_ld_so_conf_dirs_in_order() {
    let fs = conf_sysroot();
    let r = Resolver::new(&fs, &fs, config());
    assert_eq!(
        r.conf_dirs(),
        [PathBuf::from("/opt/a"), "/opt/b".into(), "/opt/main".into()]
    );

    // A relative include is relative to the including file's directory.
    let mut fs = MemFs::new();
    fs.file("/etc/ld.so.conf", "include ld.so.conf.d/*.conf\n")
        .file(
            "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "/usr/local/lib/x86_64-linux-gnu\n",
        )
        .file("/etc/ld.so.conf.d/libc.conf", "/usr/local/lib\n");
    let r = Resolver::new(&fs, &fs, config());
    assert_eq!(
        r.conf_dirs(),
        [
            PathBuf::from("/usr/local/lib"),
            "/usr/local/lib/x86_64-linux-gnu".into()
        ]
    );

    // No ld.so.conf: nothing.
    let fs = MemFs::new();
    assert!(Resolver::new(&fs, &fs, config()).conf_dirs().is_empty());
}

#[test]
fn resolver_ld_so_conf_search_order() {
    let mut fs = conf_sysroot();
    put(
        &mut fs,
        "/app/bin/app",
        ElfSpec::exe().runpath("/opt/ru").needs(&[
            "libru.so",
            "libab.so",
            "libbdef.so",
            "libmain.so",
            "libdef.so",
            "libcomm.so",
            "libdis.so",
        ]),
    );
    put(&mut fs, "/opt/ru/libru.so", ElfSpec::default());
    put(&mut fs, "/opt/a/libru.so", ElfSpec::default());
    put(&mut fs, "/opt/a/libab.so", ElfSpec::default());
    put(&mut fs, "/opt/b/libab.so", ElfSpec::default());
    put(&mut fs, "/opt/b/libbdef.so", ElfSpec::default());
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libbdef.so",
        ElfSpec::default(),
    );
    put(&mut fs, "/opt/main/libmain.so", ElfSpec::default());
    put(&mut fs, "/usr/lib/libdef.so", ElfSpec::default());
    put(&mut fs, "/opt/commented/libcomm.so", ElfSpec::default());
    put(&mut fs, "/opt/disabled/libdis.so", ElfSpec::default());

    let c = closure(&fs, "/app/bin/app");
    let at = |name: &str, dir: &str, via: Via| {
        let path = format!("{dir}/{name}");
        dep(name, &path, &path, "/app/bin/app", via)
    };
    assert_eq!(
        c.libraries,
        [
            // DT_RUNPATH before ld.so.conf.
            at("libru.so", "/opt/ru", Via::Runpath),
            // a.conf before b.conf (sorted glob).
            at("libab.so", "/opt/a", Via::LdSoConf),
            // ld.so.conf before the default directories.
            at("libbdef.so", "/opt/b", Via::LdSoConf),
            at("libmain.so", "/opt/main", Via::LdSoConf),
            at("libdef.so", "/usr/lib", Via::DefaultDir),
        ]
    );
    assert_eq!(
        c.missing,
        [
            missing("libcomm.so", "/app/bin/app"),
            missing("libdis.so", "/app/bin/app"),
        ]
    );
}

// ---------------------------------------------------------------------------
// Symlinks, the interpreter

/// A usr-merged Debian-style sysroot: /lib -> usr/lib, /lib64 -> usr/lib64,
/// the PT_INTERP path an absolute symlink into the multiarch directory.
fn usr_merged() -> MemFs {
    let mut fs = MemFs::new();
    fs.symlink("/lib", "usr/lib")
        .symlink("/lib64", "usr/lib64")
        .symlink("/bin", "usr/bin")
        .symlink(
            "/usr/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        )
        .symlink("/usr/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.2.3");
    put(
        &mut fs,
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        ElfSpec::lib("ld-linux-x86-64.so.2"),
    );
    put(
        &mut fs,
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6").needs(&["ld-linux-x86-64.so.2"]),
    );
    put(
        &mut fs,
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        ElfSpec::lib("libfoo.so.1").needs(&["libc.so.6"]),
    );
    put(
        &mut fs,
        "/usr/bin/app",
        ElfSpec::dyn_exe().needs(&["libfoo.so.1", "libc.so.6"]),
    );
    fs
}

fn interp_dep(needed_by: &str) -> Dep {
    Dep {
        name: INTERP.into(),
        side: Side::Sysroot,
        path: INTERP.into(),
        real: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
        image_path: INTERP.into(),
        needed_by: needed_by.into(),
        via: Via::Interpreter,
    }
}

#[test]
fn resolver_usr_merge_interpreter_and_symlinks() {
    let fs = usr_merged();
    let c = closure(&fs, "/bin/app");
    assert_eq!(c.interpreter, Some(interp_dep("/bin/app")));
    assert_eq!(
        c.libraries,
        [
            dep(
                "libfoo.so.1",
                "/lib/x86_64-linux-gnu/libfoo.so.1",
                "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
                "/bin/app",
                Via::DefaultDir
            ),
            dep(
                "libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/bin/app",
                Via::DefaultDir
            ),
            // libc's DT_NEEDED "ld-linux-x86-64.so.2" is the interpreter,
            // already in the process under that soname.
            Dep {
                name: "ld-linux-x86-64.so.2".into(),
                ..interp_dep("/lib/x86_64-linux-gnu/libc.so.6")
            },
        ]
    );
    assert_eq!(c.missing, []);
}

/// The same absolute symlink on a real directory tree: it must be followed
/// inside the sysroot, not on the host (where the target does not exist).
#[test]
fn resolver_absolute_symlink_stays_inside_a_host_sysroot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let multiarch = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&multiarch).unwrap();
    std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
    let ld = "/lib/x86_64-linux-gnu/ld-bareroot-test.so.2";
    std::os::unix::fs::symlink(ld, root.join("usr/lib64/ld-bareroot-test.so.2")).unwrap();
    let write = |path: &Path, spec: ElfSpec| std::fs::write(path, spec.bytes()).unwrap();
    write(
        &multiarch.join("ld-bareroot-test.so.2"),
        ElfSpec::lib("ld-bareroot-test.so.2"),
    );
    write(
        &multiarch.join("libc.so.6"),
        ElfSpec::lib("libc.so.6").needs(&["ld-bareroot-test.so.2"]),
    );
    write(
        &root.join("usr/bin/app"),
        ElfSpec::exe()
            .interp("/lib64/ld-bareroot-test.so.2")
            .needs(&["libc.so.6"]),
    );

    let fs = HostFs::new(root);
    let c = closure(&fs, "/usr/bin/app");
    let interp = Dep {
        name: "/lib64/ld-bareroot-test.so.2".into(),
        side: Side::Sysroot,
        path: "/lib64/ld-bareroot-test.so.2".into(),
        real: "/usr/lib/x86_64-linux-gnu/ld-bareroot-test.so.2".into(),
        image_path: "/lib64/ld-bareroot-test.so.2".into(),
        needed_by: "/usr/bin/app".into(),
        via: Via::Interpreter,
    };
    assert_eq!(c.interpreter.as_ref(), Some(&interp));
    assert_eq!(
        c.libraries,
        [
            dep(
                "libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/bin/app",
                Via::DefaultDir
            ),
            Dep {
                name: "ld-bareroot-test.so.2".into(),
                needed_by: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                ..interp
            },
        ]
    );
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_interpreter_listed_once_however_many_need_it() {
    let mut fs = usr_merged();
    put(
        &mut fs,
        "/usr/lib/x86_64-linux-gnu/libpthread.so.0",
        ElfSpec::lib("libpthread.so.0").needs(&["libc.so.6", "ld-linux-x86-64.so.2"]),
    );
    put(
        &mut fs,
        "/usr/bin/tool",
        ElfSpec::dyn_exe().needs(&["ld-linux-x86-64.so.2", "libpthread.so.0", "libc.so.6"]),
    );
    let c = closure(&fs, "/usr/bin/tool");
    assert_eq!(c.interpreter, Some(interp_dep("/usr/bin/tool")));
    assert_eq!(
        c.libraries,
        [
            Dep {
                name: "ld-linux-x86-64.so.2".into(),
                ..interp_dep("/usr/bin/tool")
            },
            dep(
                "libpthread.so.0",
                "/lib/x86_64-linux-gnu/libpthread.so.0",
                "/usr/lib/x86_64-linux-gnu/libpthread.so.0",
                "/usr/bin/tool",
                Via::DefaultDir
            ),
            dep(
                "libc.so.6",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/bin/tool",
                Via::DefaultDir
            ),
        ]
    );
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_missing_interpreter() {
    let mut fs = MemFs::new();
    put(&mut fs, "/usr/bin/app", ElfSpec::dyn_exe());
    let c = closure(&fs, "/usr/bin/app");
    assert_eq!(c.interpreter, None);
    assert_eq!(c.libraries, []);
    assert_eq!(c.missing, [missing(INTERP, "/usr/bin/app")]);
}

// ---------------------------------------------------------------------------
// Candidates of the wrong ELF class or machine

#[test]
fn resolver_skips_wrong_class_and_machine() {
    let mut fs = MemFs::new();
    // Earlier in the default directories: ELF32 i386, then ELF64 aarch64.
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libfoo.so.1",
        ElfSpec::lib("libfoo.so.1").class32().machine(EM_386),
    );
    put(
        &mut fs,
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1",
        ElfSpec::lib("libfoo.so.1").machine(EM_AARCH64),
    );
    put(&mut fs, "/lib/libfoo.so.1", ElfSpec::lib("libfoo.so.1"));
    // In the DT_RPATH directory an ELF32 x86-64 (class differs, machine not).
    put(
        &mut fs,
        "/opt/rp/libbar.so.1",
        ElfSpec::lib("libbar.so.1").class32(),
    );
    put(&mut fs, "/usr/lib/libbar.so.1", ElfSpec::lib("libbar.so.1"));
    // Only wrong ones: missing.
    put(
        &mut fs,
        "/usr/lib/libarm.so.1",
        ElfSpec::lib("libarm.so.1").machine(EM_AARCH64),
    );
    put(
        &mut fs,
        "/usr/bin/app",
        ElfSpec::exe()
            .rpath("/opt/rp")
            .needs(&["libfoo.so.1", "libbar.so.1", "libarm.so.1"]),
    );
    // A 32-bit i386 program gets the i386 one.
    put(
        &mut fs,
        "/usr/bin/app32",
        ElfSpec::exe()
            .class32()
            .machine(EM_386)
            .needs(&["libfoo.so.1"]),
    );

    let c = closure(&fs, "/usr/bin/app");
    assert_eq!(
        c.libraries,
        [
            default_dep("libfoo.so.1", "/lib", "/usr/bin/app"),
            default_dep("libbar.so.1", "/usr/lib", "/usr/bin/app"),
        ]
    );
    assert_eq!(c.missing, [missing("libarm.so.1", "/usr/bin/app")]);

    let c = closure(&fs, "/usr/bin/app32");
    assert_eq!(
        c.libraries,
        [default_dep("libfoo.so.1", MULTIARCH, "/usr/bin/app32")]
    );
}

// ---------------------------------------------------------------------------
// Bookkeeping

#[test]
fn resolver_reports_missing_with_name_and_needer() {
    let mut fs = MemFs::new();
    put(
        &mut fs,
        "/usr/bin/app",
        ElfSpec::exe().needs(&["libgone.so.1", "libc.so.6"]),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6").needs(&["libalsogone.so.2"]),
    );
    let c = closure(&fs, "/usr/bin/app");
    assert_eq!(
        c.libraries,
        [default_dep("libc.so.6", MULTIARCH, "/usr/bin/app")]
    );
    assert_eq!(
        c.missing,
        [
            missing("libgone.so.1", "/usr/bin/app"),
            missing("libalsogone.so.2", "/lib/x86_64-linux-gnu/libc.so.6"),
        ]
    );
}

#[test]
fn resolver_lists_each_library_once() {
    let mut fs = MemFs::new();
    let d = MULTIARCH;
    put(
        &mut fs,
        "/usr/bin/app",
        ElfSpec::exe().needs(&[
            "liba.so.1",
            "libb.so.1",
            "libc.so.6",
            "libfoo.so",
            "libq.so.1",
        ]),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/liba.so.1",
        ElfSpec::lib("liba.so.1").needs(&["libc.so.6", "libb.so.1", "libfoo.so.1", "libq.so"]),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libb.so.1",
        ElfSpec::lib("libb.so.1").needs(&["libc.so.6", "liba.so.1"]),
    );
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6"),
    );
    // Asked for by its development name first, then by its soname.
    fs.symlink("/lib/x86_64-linux-gnu/libfoo.so", "libfoo.so.1.0")
        .symlink("/lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.0");
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libfoo.so.1.0",
        ElfSpec::lib("libfoo.so.1"),
    );
    // No soname: the second name is recognized as the same file.
    fs.symlink("/lib/x86_64-linux-gnu/libq.so.1", "libq.so.1.0")
        .symlink("/lib/x86_64-linux-gnu/libq.so", "libq.so.1.0");
    put(
        &mut fs,
        "/lib/x86_64-linux-gnu/libq.so.1.0",
        ElfSpec::default(),
    );

    let c = closure(&fs, "/usr/bin/app");
    assert_eq!(
        c.libraries,
        [
            default_dep("liba.so.1", d, "/usr/bin/app"),
            default_dep("libb.so.1", d, "/usr/bin/app"),
            default_dep("libc.so.6", d, "/usr/bin/app"),
            dep(
                "libfoo.so",
                "/lib/x86_64-linux-gnu/libfoo.so",
                "/lib/x86_64-linux-gnu/libfoo.so.1.0",
                "/usr/bin/app",
                Via::DefaultDir
            ),
            dep(
                "libq.so.1",
                "/lib/x86_64-linux-gnu/libq.so.1",
                "/lib/x86_64-linux-gnu/libq.so.1.0",
                "/usr/bin/app",
                Via::DefaultDir
            ),
        ]
    );
    assert_eq!(c.missing, []);
}

/// Counts reads per path; everything else goes to the wrapped tree.
struct CountingFs {
    inner: MemFs,
    reads: Mutex<BTreeMap<PathBuf, usize>>,
}

impl Fs for CountingFs {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        self.inner.lstat(path)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.read_link(path)
    }

    fn read(&self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        *self
            .reads
            .lock()
            .unwrap()
            .entry(path.to_path_buf())
            .or_default() += 1;
        self.inner.read(path, limit)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.read_dir(path)
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        self.inner.host_path(path)
    }
}

#[test]
fn resolver_reads_each_file_once() {
    let mut fs = usr_merged();
    // A wrong-class candidate met by every lookup of libz.so.1.
    put(
        &mut fs,
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        ElfSpec::lib("libz.so.1").class32().machine(EM_386),
    );
    put(&mut fs, "/usr/lib/libz.so.1", ElfSpec::lib("libz.so.1"));
    put(
        &mut fs,
        "/usr/bin/other",
        ElfSpec::dyn_exe().needs(&["libz.so.1", "libfoo.so.1", "libc.so.6"]),
    );
    let fs = CountingFs {
        inner: fs,
        reads: Mutex::default(),
    };
    let r = Resolver::new(&fs, &fs, config());
    for app in ["/usr/bin/app", "/bin/app", "/usr/bin/other"] {
        let c = r.closure(&root_at(Side::Sysroot, app, app)).unwrap();
        assert_eq!(c.missing, [], "{app}");
    }
    let reads = fs.reads.lock().unwrap();
    let counts: Vec<(String, usize)> = reads
        .iter()
        .map(|(p, n)| (p.display().to_string(), *n))
        .collect();
    let expected: Vec<(String, usize)> = [
        "/usr/bin/app",
        "/usr/bin/other",
        "/usr/lib/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .map(|p| (p.to_string(), 1))
    .collect();
    assert_eq!(counts, expected);
}

#[test]
fn resolver_static_executable_has_empty_closure() {
    let mut fs = usr_merged();
    put(&mut fs, "/usr/bin/static", ElfSpec::exe());
    let c = closure(&fs, "/usr/bin/static");
    assert_eq!(c.interpreter, None);
    assert_eq!(c.libraries, []);
    assert_eq!(c.missing, []);
}

#[test]
fn resolver_root_errors() {
    let mut fs = MemFs::new();
    fs.file("/usr/bin/script", "#!/bin/sh\necho hi\n")
        .dir("/usr/lib");
    let r = Resolver::new(&fs, &fs, config());
    let err = |p: &str| r.closure(&root_at(Side::Sysroot, p, p)).unwrap_err();
    assert_eq!(err("/usr/bin/script"), "not an ELF file");
    assert_eq!(err("/usr/lib"), "not a regular file");
    assert!(!err("/usr/bin/nothing").is_empty());
}
