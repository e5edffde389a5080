//! ELF facts: bytes → owned [`ElfInfo`]. The only module that imports goblin;
//! goblin's borrowed views stop here. Parsing is bounded (a size cap) and a
//! panic inside the parser becomes an error naming the file.

use std::panic::{catch_unwind, AssertUnwindSafe};

use goblin::elf::header::{EI_CLASS, ELFCLASS32, ELFCLASS64, ELFMAG, SELFMAG};
use goblin::elf::Elf;

/// Files larger than this are not parsed as ELF (nor read whole).
pub const MAX_ELF_SIZE: u64 = 2 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElfClass {
    Elf32,
    Elf64,
}

/// What kind of object `e_type` says this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfKind {
    Executable,
    SharedObject,
    Relocatable,
    Other,
}

/// The facts about one ELF file that closure and image building need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    pub class: ElfClass,
    pub little_endian: bool,
    pub machine: u16,
    pub kind: ElfKind,
    /// `e_flags` (carries the arm float ABI).
    pub flags: u32,
    /// PT_INTERP.
    pub interpreter: Option<String>,
    /// DT_NEEDED, in file order.
    pub needed: Vec<String>,
    /// DT_RPATH entries (split at ':'); empty when DT_RUNPATH exists, as glibc ignores it then.
    pub rpath: Vec<String>,
    /// DT_RUNPATH entries (split at ':').
    pub runpath: Vec<String>,
    /// A DT_RUNPATH entry exists, even an empty one: it still switches off
    /// the inherited DT_RPATH chain for this object's dependencies.
    pub has_runpath: bool,
    pub soname: Option<String>,
    /// Has a dynamic section (PT_DYNAMIC).
    pub dynamic: bool,
    /// Symbol versions needed (.gnu.version_r): (library soname, versions).
    pub verneed: Vec<(String, Vec<String>)>,
    /// Symbol versions defined (.gnu.version_d), without the base entry.
    pub verdef: Vec<String>,
    /// Libraries the object dlopens, from FDO `.note.dlopen` notes.
    pub dlopen: Vec<DlopenNote>,
}

/// How much a program wants a library it dlopens (the FDO dlopen note spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DlopenPriority {
    Required,
    Recommended,
    Suggested,
}

/// One entry of a `.note.dlopen` note: alternatives, any one will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlopenNote {
    pub feature: String,
    pub sonames: Vec<String>,
    pub priority: DlopenPriority,
}

/// The FDO note type for dlopen metadata ("FDO", 0x407c0c0a).
const NT_FDO_DLOPEN_METADATA: u32 = 0x407c_0c0a;

impl ElfInfo {
    /// "ELF64 little-endian x86-64".
    pub fn describe(&self) -> String {
        describe(self.class, self.little_endian, self.machine)
    }

    /// A statically linked program: nothing for the loader to do.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

/// Do these bytes start like an ELF file?
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.len() >= SELFMAG && &bytes[..SELFMAG] == ELFMAG
}

/// Parse ELF bytes. The error is a short cause ("truncated header", ...), to be
/// prefixed with the file's path by the caller.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo, String> {
    if !is_elf(bytes) {
        return Err("not an ELF file".into());
    }
    if bytes.len() <= EI_CLASS || !matches!(bytes[EI_CLASS], ELFCLASS32 | ELFCLASS64) {
        return Err("invalid ELF class".into());
    }
    let parsed = catch_unwind(AssertUnwindSafe(|| light_parse(bytes)));
    let elf = match parsed {
        Ok(Ok(elf)) => elf,
        Ok(Err(e)) => return Err(format!("malformed ELF: {}", first_line(&e.to_string()))),
        Err(_) => return Err("malformed ELF: the parser gave up on it".into()),
    };
    let split = |v: &[&str]| -> Vec<String> {
        v.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let runpath = split(&elf.runpaths);
    let strtab = &elf.dynstrtab;
    let mut verneed = Vec::new();
    if let Some(vn) = &elf.verneed {
        for need in vn.iter() {
            let file = strtab.get_at(need.vn_file).unwrap_or("").to_string();
            let versions = need
                .iter()
                .filter_map(|aux| strtab.get_at(aux.vna_name).map(str::to_string))
                .collect();
            verneed.push((file, versions));
        }
    }
    let mut verdef = Vec::new();
    if let Some(vd) = &elf.verdef {
        for def in vd.iter() {
            if def.vd_flags & goblin::elf::symver::VER_FLG_BASE != 0 {
                continue;
            }
            if let Some(name) = def.iter().next().and_then(|a| strtab.get_at(a.vda_name)) {
                verdef.push(name.to_string());
            }
        }
    }
    let dlopen = dlopen_notes(&elf, bytes);
    // glibc drops DT_RPATH when DT_RUNPATH is present (elf_get_dynamic_info).
    let rpath = if runpath.is_empty() && elf.runpaths.is_empty() {
        split(&elf.rpaths)
    } else {
        Vec::new()
    };
    use goblin::elf::header::{ET_DYN, ET_EXEC, ET_REL};
    Ok(ElfInfo {
        class: if elf.is_64 {
            ElfClass::Elf64
        } else {
            ElfClass::Elf32
        },
        little_endian: elf.little_endian,
        machine: elf.header.e_machine,
        kind: match elf.header.e_type {
            ET_EXEC => ElfKind::Executable,
            ET_DYN => ElfKind::SharedObject,
            ET_REL => ElfKind::Relocatable,
            _ => ElfKind::Other,
        },
        flags: elf.header.e_flags,
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath,
        runpath,
        has_runpath: !elf.runpaths.is_empty(),
        soname: elf.soname.map(str::to_string),
        dynamic: elf.dynamic.is_some(),
        verneed,
        verdef,
        dlopen,
    })
}

/// Parse `.note.dlopen` (or any PT_NOTE) entries of the FDO dlopen type.
/// A malformed payload is ignored, as the loader never reads it either.
fn dlopen_notes(elf: &Elf, bytes: &[u8]) -> Vec<DlopenNote> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        feature: String,
        #[serde(default)]
        soname: Vec<String>,
        #[serde(default)]
        priority: Option<String>,
    }
    let mut out = Vec::new();
    let mut take = |desc: &[u8]| {
        let text = desc.split(|&b| b == 0).next().unwrap_or(&[]);
        if let Ok(entries) = serde_json::from_slice::<Vec<Raw>>(text) {
            for e in entries {
                let priority = match e.priority.as_deref() {
                    Some("required") => DlopenPriority::Required,
                    Some("suggested") => DlopenPriority::Suggested,
                    _ => DlopenPriority::Recommended,
                };
                if !e.soname.is_empty() {
                    out.push(DlopenNote {
                        feature: e.feature,
                        sonames: e.soname,
                        priority,
                    });
                }
            }
        }
    };
    let notes = catch_unwind(AssertUnwindSafe(|| {
        let mut found = Vec::new();
        if let Some(iter) = elf.iter_note_sections(bytes, Some(".note.dlopen")) {
            for n in iter.flatten() {
                if n.n_type == NT_FDO_DLOPEN_METADATA && n.name == "FDO" {
                    found.push(n.desc.to_vec());
                }
            }
        }
        if found.is_empty() {
            if let Some(iter) = elf.iter_note_headers(bytes) {
                for n in iter.flatten() {
                    if n.n_type == NT_FDO_DLOPEN_METADATA && n.name == "FDO" {
                        found.push(n.desc.to_vec());
                    }
                }
            }
        }
        found
    }))
    .unwrap_or_default();
    for d in notes {
        take(&d);
    }
    out
}

/// goblin's `Elf` with only what bareroot reads: program headers, the
/// interpreter, section headers and their names, the dynamic section and
/// its strings, symbol versions. Symbol tables and relocations — most of a
/// large library — are never touched, so parsing costs little time and
/// memory whatever the file's size.
fn light_parse(bytes: &[u8]) -> goblin::error::Result<Elf<'_>> {
    use goblin::container::{Container, Ctx};
    use goblin::elf::dynamic::{Dynamic, DT_RPATH, DT_RUNPATH};
    use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
    use goblin::elf::section_header::SectionHeader;
    use goblin::elf::symver::{VerdefSection, VerneedSection};
    use goblin::strtab::Strtab;

    let header = Elf::parse_header(bytes)?;
    let mut elf = Elf::lazy_parse(header)?;
    let container = if elf.is_64 {
        Container::Big
    } else {
        Container::Little
    };
    let ctx = Ctx::new(container, scroll::Endian::from(elf.little_endian));
    elf.program_headers =
        ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)?;
    // The first PT_INTERP is the one the kernel uses.
    if let Some(ph) = elf.program_headers.iter().find(|ph| ph.p_type == PT_INTERP) {
        // As the kernel reads it: p_filesz bytes ending in a NUL; the
        // path is the C string they start with.
        let raw = usize::try_from(ph.p_offset)
            .ok()
            .zip(usize::try_from(ph.p_filesz).ok())
            .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?))
            .ok_or_else(|| {
                goblin::error::Error::Malformed(format!(
                    "PT_INTERP (offset {}, {} bytes) lies outside the file",
                    ph.p_offset, ph.p_filesz
                ))
            })?;
        if raw.last() != Some(&0) {
            return Err(goblin::error::Error::Malformed(
                "PT_INTERP is not NUL-terminated".into(),
            ));
        }
        let path = raw.split(|&c| c == 0).next().unwrap_or_default();
        if path.is_empty() {
            return Err(goblin::error::Error::Malformed(
                "PT_INTERP names the empty path".into(),
            ));
        }
        elf.interpreter =
            Some(std::str::from_utf8(path).map_err(|_| {
                goblin::error::Error::Malformed("PT_INTERP is not valid UTF-8".into())
            })?);
    }
    // Section headers are optional (sstrip removes them); without them
    // there are no version sections or note sections to read.
    // goblin reads an extended count (e_shnum 0: section 0's sh_size) and
    // refuses counts the file cannot hold.
    if let Ok(shdrs) =
        SectionHeader::parse(bytes, header.e_shoff as usize, header.e_shnum as usize, ctx)
    {
        if let Some(sh) = shdrs.get(names_index(header.e_shstrndx, &shdrs)) {
            if let Ok(t) = Strtab::parse(bytes, sh.sh_offset as usize, sh.sh_size as usize, 0) {
                elf.shdr_strtab = t;
            }
        }
        elf.section_headers = shdrs;
    }
    elf.dynamic = Dynamic::parse(bytes, &elf.program_headers, ctx)?;
    if let Some(dynamic) = &elf.dynamic {
        let info = &dynamic.info;
        elf.dynstrtab = Strtab::parse(bytes, info.strtab, info.strsz, 0)?;
        // A name the string table does not hold would be dropped without
        // a word, and the image would lack a library the loader wants.
        use goblin::elf::dynamic::{DT_NEEDED, DT_SONAME};
        for d in &dynamic.dyns {
            let name = elf.dynstrtab.get_at(d.d_val as usize);
            if d.d_tag == DT_NEEDED && name == Some("") {
                return Err(goblin::error::Error::Malformed(
                    "a DT_NEEDED entry names the empty string".into(),
                ));
            }
            if matches!(d.d_tag, DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH) && name.is_none() {
                return Err(goblin::error::Error::Malformed(format!(
                    "dynamic entry {} names offset {} outside its string table ({} bytes)",
                    goblin::elf::dynamic::tag_to_str(d.d_tag),
                    d.d_val,
                    info.strsz
                )));
            }
        }
        if info.soname != 0 {
            elf.soname = elf.dynstrtab.get_at(info.soname);
        }
        elf.libraries = dynamic.get_libraries(&elf.dynstrtab);
        for d in &dynamic.dyns {
            if d.d_tag == DT_RPATH {
                elf.rpaths.extend(elf.dynstrtab.get_at(d.d_val as usize));
            } else if d.d_tag == DT_RUNPATH {
                elf.runpaths.extend(elf.dynstrtab.get_at(d.d_val as usize));
            }
        }
    }
    elf.verneed = VerneedSection::parse(bytes, &elf.section_headers, ctx).unwrap_or(None);
    elf.verdef = VerdefSection::parse(bytes, &elf.section_headers, ctx).unwrap_or(None);
    Ok(elf)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_lowercase()
}

/// A human name for an `e_machine` value.
pub fn machine_name(machine: u16) -> String {
    use goblin::elf::header::*;
    match machine {
        EM_X86_64 => "x86-64".into(),
        EM_386 => "i386".into(),
        EM_AARCH64 => "aarch64".into(),
        EM_ARM => "arm".into(),
        EM_RISCV => "risc-v".into(),
        EM_PPC64 => "powerpc64".into(),
        EM_S390 => "s390".into(),
        EM_MIPS => "mips".into(),
        other => format!("machine {other}"),
    }
}

/// The bytes of the section called `name`, if the file has section headers
/// and that section lies inside the file.
/// Only the header and section headers are read (no symbol tables), so a
/// large library costs little.
pub fn section_data<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    use goblin::elf::section_header::SectionHeader;
    let found = catch_unwind(AssertUnwindSafe(|| -> Option<SectionHeader> {
        let header = Elf::parse_header(bytes).ok()?;
        let ctx = goblin::container::Ctx::new(header.container().ok()?, header.endianness().ok()?);
        let shdrs =
            SectionHeader::parse(bytes, header.e_shoff as usize, header.e_shnum as usize, ctx)
                .ok()?;
        let strtab = shdrs.get(names_index(header.e_shstrndx, &shdrs))?;
        let start = usize::try_from(strtab.sh_offset).ok()?;
        let end = start.checked_add(usize::try_from(strtab.sh_size).ok()?)?;
        let names = bytes.get(start..end)?;
        shdrs.into_iter().find(|sh| {
            let at = sh.sh_name;
            names
                .get(at..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                == Some(name.as_bytes())
        })
    }))
    .ok()??;
    let sh = &found;
    if sh.sh_type == goblin::elf::section_header::SHT_NOBITS {
        return None;
    }
    let start = usize::try_from(sh.sh_offset).ok()?;
    let len = usize::try_from(sh.sh_size).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// Does the file have a section header table? (With extended numbering
/// e_shnum is 0 and section 0's sh_size holds the count.)
pub fn has_section_headers(bytes: &[u8]) -> bool {
    use goblin::elf::section_header::SectionHeader;
    let Ok(h) = Elf::parse_header(bytes) else {
        return false;
    };
    if h.e_shoff == 0 {
        return false;
    }
    if h.e_shnum > 0 {
        return true;
    }
    let (Ok(container), Ok(endian)) = (h.container(), h.endianness()) else {
        return false;
    };
    let ctx = goblin::container::Ctx::new(container, endian);
    catch_unwind(AssertUnwindSafe(|| {
        SectionHeader::parse(bytes, h.e_shoff as usize, 0, ctx).is_ok_and(|s| s.len() > 1)
    }))
    .unwrap_or(false)
}

/// The index of the section-name string table: e_shstrndx, or section 0's
/// sh_link when e_shstrndx is SHN_XINDEX (extended numbering, for files
/// with 0xff00 sections or more).
fn names_index(e_shstrndx: u16, shdrs: &[goblin::elf::SectionHeader]) -> usize {
    if u32::from(e_shstrndx) == goblin::elf::section_header::SHN_XINDEX {
        shdrs.first().map_or(usize::MAX, |sh0| sh0.sh_link as usize)
    } else {
        usize::from(e_shstrndx)
    }
}

/// `len` bytes at virtual address `vaddr`, through the PT_LOAD segments.
pub fn read_vaddr(bytes: &[u8], vaddr: u64, len: usize) -> Option<&[u8]> {
    let elf = catch_unwind(AssertUnwindSafe(|| Elf::parse(bytes)))
        .ok()?
        .ok()?;
    let ph = elf.program_headers.iter().find(|ph| {
        ph.p_type == goblin::elf::program_header::PT_LOAD
            && vaddr >= ph.p_vaddr
            && (vaddr as u128 + len as u128) <= (ph.p_vaddr as u128 + ph.p_filesz as u128)
    })?;
    let start = usize::try_from(ph.p_offset.checked_add(vaddr - ph.p_vaddr)?).ok()?;
    bytes.get(start..start.checked_add(len)?)
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
        machine_name(machine)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_garbage() {
        assert_eq!(parse(b"#!/bin/sh\n").unwrap_err(), "not an ELF file");
        let mut junk = b"\x7fELF\x02\x01\x01".to_vec();
        junk.resize(80, 0xff);
        assert!(parse(&junk).unwrap_err().starts_with("malformed ELF"));
    }

    #[test]
    fn parses_own_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(exe).unwrap();
        let info = parse(&bytes).unwrap();
        assert_eq!(info.machine, machine_of_host());
        assert!(info.interpreter.is_some() || info.is_static());
    }

    fn machine_of_host() -> u16 {
        use goblin::elf::header::*;
        match std::env::consts::ARCH {
            "x86_64" => EM_X86_64,
            "aarch64" => EM_AARCH64,
            _ => 0,
        }
    }
}
