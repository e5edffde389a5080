//! Toolchains: what a platform's binaries must look like and where its loader
//! searches. One TOML file per platform in `toolchains/`, embedded at compile
//! time so an installed `bareroot` needs no checkout; `--toolchains DIR` or a
//! recipe's `toolchains = [...]` add more (or replace one, by platform).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::elf::{ElfClass, ElfInfo};
use crate::error::{Error, IoResultExt, Result};
use crate::platform::Platform;

/// The toolchain files shipped inside the binary.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "linux-386.toml",
        include_str!("../toolchains/linux-386.toml"),
    ),
    (
        "linux-amd64.toml",
        include_str!("../toolchains/linux-amd64.toml"),
    ),
    (
        "linux-arm-v7.toml",
        include_str!("../toolchains/linux-arm-v7.toml"),
    ),
    (
        "linux-arm64.toml",
        include_str!("../toolchains/linux-arm64.toml"),
    ),
    (
        "linux-riscv64.toml",
        include_str!("../toolchains/linux-riscv64.toml"),
    ),
];

/// Everything bareroot knows about one platform.
#[derive(Clone, Debug)]
pub struct Toolchain {
    pub platform: Platform,
    /// ELF `e_machine` every binary of this platform carries.
    pub machine: u16,
    pub class: ElfClass,
    pub little_endian: bool,
    /// `e_flags & flags_mask == flags` for dynamically linked objects (the
    /// float ABI on arm and riscv); mask 0 checks nothing.
    pub flags_mask: u32,
    pub flags: u32,
    /// Name of the ABI those flags select ("hard-float"), for messages.
    pub float_abi: Option<String>,
    /// Debian multiarch triplet ("x86_64-linux-gnu", "i386-linux-gnu").
    pub triplet: String,
    /// What `$PLATFORM` expands to (AT_PLATFORM).
    pub at_platform: String,
    /// Flag word of this ABI's ld.so.cache entries.
    pub cache_flags: i32,
    /// The loader's built-in search directories, in order.
    pub default_dirs: Vec<String>,
    /// Default sysroot when this is not the host platform (Debian's
    /// `libc6-dev-<arch>-cross` tree).
    pub cross_sysroot: PathBuf,
    /// qemu-user binary that runs this platform's programs.
    pub qemu: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolchain {
    platform: String,
    elf: RawElf,
    loader: RawLoader,
    sysroot: RawSysroot,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElf {
    machine: u16,
    class: u8,
    endian: String,
    #[serde(default)]
    flags_mask: u32,
    #[serde(default)]
    flags: u32,
    float_abi: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoader {
    triplet: String,
    at_platform: String,
    cache_flags: i32,
    default_dirs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSysroot {
    cross: PathBuf,
    qemu: String,
}

impl Toolchain {
    /// Parse one toolchain file; `name` names it in messages.
    pub fn parse(name: &str, text: &str) -> Result<Toolchain> {
        let raw: RawToolchain = toml::from_str(text).map_err(|e| {
            Error::msg(format!(
                "parse toolchain {name}: {}",
                e.message().trim().replace('\n', " ")
            ))
        })?;
        let bad = |what: &str| Error::msg(format!("parse toolchain {name}: {what}"));
        let class = match raw.elf.class {
            32 => ElfClass::Elf32,
            64 => ElfClass::Elf64,
            _ => return Err(bad("elf.class must be 32 or 64")),
        };
        let little_endian = match raw.elf.endian.as_str() {
            "little" => true,
            "big" => false,
            _ => return Err(bad("elf.endian must be \"little\" or \"big\"")),
        };
        if raw.elf.flags & !raw.elf.flags_mask != 0 {
            return Err(bad("elf.flags has bits outside elf.flags_mask"));
        }
        for d in &raw.loader.default_dirs {
            if !d.starts_with('/') {
                return Err(bad("loader.default_dirs must be absolute"));
            }
        }
        Ok(Toolchain {
            platform: raw
                .platform
                .parse()
                .map_err(|e: Error| bad(&e.to_string()))?,
            machine: raw.elf.machine,
            class,
            little_endian,
            flags_mask: raw.elf.flags_mask,
            flags: raw.elf.flags,
            float_abi: raw.elf.float_abi,
            triplet: raw.loader.triplet,
            at_platform: raw.loader.at_platform,
            cache_flags: raw.loader.cache_flags,
            default_dirs: raw.loader.default_dirs,
            cross_sysroot: raw.sysroot.cross,
            qemu: raw.sysroot.qemu,
        })
    }

    /// The host's own platform runs from "/"; others from the cross sysroot
    /// (see `loader::Loader::open`).
    pub fn is_host(&self) -> bool {
        self.platform == Platform::host()
    }

    /// Does this ELF belong to this platform? `Err` says what it is instead.
    /// The float-ABI flags are checked only on dynamically linked objects: a
    /// static (Go, musl) binary brings its own ABI.
    pub fn check(&self, info: &ElfInfo) -> std::result::Result<(), String> {
        let want = crate::elf::describe(self.class, self.little_endian, self.machine);
        if info.machine != self.machine
            || info.class != self.class
            || info.little_endian != self.little_endian
        {
            return Err(format!(
                "is {} but {} needs {want}",
                info.describe(),
                self.platform
            ));
        }
        let dynamic = info.interpreter.is_some() || info.dynamic;
        if dynamic && self.flags_mask != 0 && info.flags & self.flags_mask != self.flags {
            return Err(format!(
                "is {} with e_flags {:#x} but {} needs the {} ABI (e_flags & {:#x} == {:#x})",
                info.describe(),
                info.flags,
                self.platform,
                self.float_abi.as_deref().unwrap_or("platform's"),
                self.flags_mask,
                self.flags
            ));
        }
        Ok(())
    }
}

/// The toolchains a build can use: the embedded ones plus any added.
#[derive(Clone, Debug)]
pub struct Toolchains {
    by_platform: BTreeMap<Platform, Toolchain>,
}

impl Default for Toolchains {
    fn default() -> Self {
        Toolchains::embedded()
    }
}

impl Toolchains {
    /// The toolchains built into bareroot.
    pub fn embedded() -> Toolchains {
        let mut by_platform = BTreeMap::new();
        for (name, text) in EMBEDDED {
            // The embedded files are part of the source; a broken one is a
            // build defect that the unit test below catches.
            let t = Toolchain::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            by_platform.insert(t.platform.clone(), t);
        }
        Toolchains { by_platform }
    }

    /// Add the toolchain files at `path` (a `.toml` file, or a directory of
    /// them); a platform defined again replaces the earlier definition.
    pub fn add_path(&mut self, path: &Path) -> Result<()> {
        let files = if path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .with_path("read toolchain directory", path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            v.sort();
            v
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            let text = std::fs::read_to_string(&f).with_path("read toolchain", &f)?;
            let t = Toolchain::parse(&f.display().to_string(), &text)?;
            self.by_platform.insert(t.platform.clone(), t);
        }
        Ok(())
    }

    /// The toolchain for `platform`, or an error listing the supported ones.
    pub fn get(&self, platform: &Platform) -> Result<&Toolchain> {
        self.by_platform.get(platform).ok_or_else(|| {
            let known: Vec<String> = self.by_platform.keys().map(|p| p.to_string()).collect();
            Error::msg(format!(
                "find toolchain for {platform}: unsupported platform (supported: {}; add one with --toolchains)",
                known.join(", ")
            ))
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &Toolchain> {
        self.by_platform.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_toolchains_parse() {
        let all = Toolchains::embedded();
        let names: Vec<String> = all.all().map(|t| t.platform.to_string()).collect();
        assert_eq!(
            names,
            [
                "linux/386",
                "linux/amd64",
                "linux/arm/v7",
                "linux/arm64/v8",
                "linux/riscv64"
            ]
        );
        let amd64 = all.get(&"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(amd64.machine, 62);
        let arm64 = all.get(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm64.platform.variant.as_deref(), Some("v8"));
        let err = all.get(&"linux/mips".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("unsupported platform"), "{err}");
    }
}
