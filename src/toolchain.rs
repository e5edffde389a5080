//! Toolchains: what a platform's binaries must look like and where its loader
//! searches. One TOML file per platform in `toolchains/`, embedded at compile
//! time so an installed `bareroot` needs no checkout.

use std::path::PathBuf;

use serde::Deserialize;

use crate::elf::{ElfClass, ElfInfo};
use crate::error::{Error, Result};
use crate::platform::Platform;

/// The toolchain files shipped inside the binary.
const EMBEDDED: &[(&str, &str)] = &[(
    "linux-amd64.toml",
    include_str!("../toolchains/linux-amd64.toml"),
)];

/// Everything bareroot knows about one platform.
#[derive(Clone, Debug)]
pub struct Toolchain {
    pub platform: Platform,
    /// ELF `e_machine` every binary of this platform carries.
    pub machine: u16,
    pub class: ElfClass,
    pub little_endian: bool,
    /// Debian multiarch triplet ("x86_64-linux-gnu").
    pub triplet: String,
    /// What `$PLATFORM` expands to (AT_PLATFORM).
    pub at_platform: String,
    /// The loader's built-in search directories, in order.
    pub default_dirs: Vec<String>,
    /// Default sysroot when this is not the host platform.
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoader {
    triplet: String,
    at_platform: String,
    default_dirs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSysroot {
    cross: PathBuf,
    qemu: String,
}

impl Toolchain {
    fn parse(name: &str, text: &str) -> Result<Toolchain> {
        let raw: RawToolchain = toml::from_str(text)
            .map_err(|e| Error::msg(format!("parse toolchain {name}: {}", e.message())))?;
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
        Ok(Toolchain {
            platform: raw.platform.parse()?,
            machine: raw.elf.machine,
            class,
            little_endian,
            triplet: raw.loader.triplet,
            at_platform: raw.loader.at_platform,
            default_dirs: raw.loader.default_dirs,
            cross_sysroot: raw.sysroot.cross,
            qemu: raw.sysroot.qemu,
        })
    }

    /// All embedded toolchains, sorted by platform.
    pub fn embedded() -> Vec<Toolchain> {
        let mut all: Vec<Toolchain> = EMBEDDED
            .iter()
            .map(|(name, text)| {
                // The embedded files are part of the source; a broken one is a
                // build defect caught by the unit test below.
                Toolchain::parse(name, text).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        all.sort_by(|a, b| a.platform.cmp(&b.platform));
        all
    }

    /// The toolchain for `platform`, or an error listing the supported ones.
    pub fn for_platform(platform: &Platform) -> Result<Toolchain> {
        let all = Toolchain::embedded();
        if let Some(t) = all.iter().find(|t| &t.platform == platform) {
            return Ok(t.clone());
        }
        let known: Vec<String> = all.iter().map(|t| t.platform.to_string()).collect();
        Err(Error::msg(format!(
            "find toolchain for {platform}: unsupported platform (supported: {})",
            known.join(", ")
        )))
    }

    /// What the resolver needs to know about this platform's loader.
    pub fn loader_config(&self) -> crate::closure::LoaderConfig {
        crate::closure::LoaderConfig {
            default_dirs: self.default_dirs.iter().map(PathBuf::from).collect(),
            lib: format!("lib/{}", self.triplet),
            platform: self.at_platform.clone(),
        }
    }

    /// The sysroot to use when nothing overrides it.
    pub fn default_sysroot(&self) -> PathBuf {
        if self.platform == Platform::host() {
            PathBuf::from("/")
        } else {
            self.cross_sysroot.clone()
        }
    }

    /// Does this ELF belong to this platform? `Err` says what it is instead.
    pub fn check(&self, info: &ElfInfo) -> std::result::Result<(), String> {
        if info.machine == self.machine
            && info.class == self.class
            && info.little_endian == self.little_endian
        {
            return Ok(());
        }
        Err(format!(
            "is {} but {} needs {}",
            info.describe(),
            self.platform,
            describe(self.class, self.little_endian, self.machine)
        ))
    }
}

/// "ELF64 little-endian x86-64".
pub fn describe(class: ElfClass, little_endian: bool, machine: u16) -> String {
    format!(
        "{} {}-endian {}",
        match class {
            ElfClass::Elf32 => "ELF32",
            ElfClass::Elf64 => "ELF64",
        },
        if little_endian { "little" } else { "big" },
        crate::elf::machine_name(machine)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_toolchains_parse() {
        let all = Toolchain::embedded();
        assert!(all.iter().any(|t| t.platform.to_string() == "linux/amd64"));
        let amd64 = Toolchain::for_platform(&"linux/amd64".parse().unwrap()).unwrap();
        assert_eq!(amd64.machine, 62);
        let err = Toolchain::for_platform(&"linux/mips".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("unsupported platform"), "{err}");
    }
}
