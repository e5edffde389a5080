//! Synthetic ELF objects for tests: the smallest files a loader (and goblin)
//! accept as executables or shared objects with a chosen class, byte order,
//! machine, PT_INTERP and dynamic section (DT_NEEDED, DT_RPATH, DT_RUNPATH,
//! DT_SONAME).
//!
//! Layout (no section headers, `e_shnum == 0`; one PT_LOAD maps the whole
//! file at vaddr == offset, so DT_STRTAB's address is its file offset):
//!
//! ```text
//! ELF header | program headers | interp string | .dynstr | (pad) | .dynamic
//! ```

/// `e_machine` values used by the tests.
pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// What to put in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfSpec {
    /// ELFCLASS64 (else ELFCLASS32).
    pub class64: bool,
    /// ELFDATA2MSB (else little-endian).
    pub big_endian: bool,
    pub machine: u16,
    /// ET_EXEC (else ET_DYN).
    pub exec: bool,
    pub interp: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub soname: Option<String>,
}

impl Default for ElfSpec {
    /// A little-endian ELF64 x86-64 shared object with an empty dynamic section.
    fn default() -> ElfSpec {
        ElfSpec {
            class64: true,
            big_endian: false,
            machine: EM_X86_64,
            exec: false,
            interp: None,
            needed: Vec::new(),
            rpath: None,
            runpath: None,
            soname: None,
        }
    }
}

impl ElfSpec {
    /// A shared object with DT_SONAME `soname`.
    pub fn lib(soname: &str) -> ElfSpec {
        ElfSpec::default().soname(soname)
    }

    /// An ET_EXEC executable; static (no PT_INTERP, no PT_DYNAMIC) until given
    /// an interpreter or dynamic entries.
    pub fn exe() -> ElfSpec {
        ElfSpec {
            exec: true,
            ..ElfSpec::default()
        }
    }

    /// A dynamically linked x86-64 executable using the usual interpreter.
    pub fn dyn_exe() -> ElfSpec {
        ElfSpec::exe().interp("/lib64/ld-linux-x86-64.so.2")
    }

    pub fn interp(mut self, path: &str) -> ElfSpec {
        self.interp = Some(path.into());
        self
    }

    /// Append DT_NEEDED entries.
    pub fn needs(mut self, names: &[&str]) -> ElfSpec {
        self.needed.extend(names.iter().map(|s| s.to_string()));
        self
    }

    pub fn rpath(mut self, path: &str) -> ElfSpec {
        self.rpath = Some(path.into());
        self
    }

    pub fn runpath(mut self, path: &str) -> ElfSpec {
        self.runpath = Some(path.into());
        self
    }

    pub fn soname(mut self, name: &str) -> ElfSpec {
        self.soname = Some(name.into());
        self
    }

    pub fn machine(mut self, machine: u16) -> ElfSpec {
        self.machine = machine;
        self
    }

    /// ELFCLASS32 (keeps the machine; pair with `.machine(EM_386)` for i386).
    pub fn class32(mut self) -> ElfSpec {
        self.class64 = false;
        self
    }

    pub fn big_endian(mut self) -> ElfSpec {
        self.big_endian = true;
        self
    }

    /// Whether the file gets a PT_DYNAMIC: always for shared objects, and for
    /// executables that have an interpreter or any dynamic entry.
    pub fn has_dynamic(&self) -> bool {
        !self.exec
            || self.interp.is_some()
            || !self.needed.is_empty()
            || self.rpath.is_some()
            || self.runpath.is_some()
            || self.soname.is_some()
    }

    /// The ELF file.
    pub fn bytes(&self) -> Vec<u8> {
        let w = Writer {
            class64: self.class64,
            big_endian: self.big_endian,
        };
        let (ehsize, phentsize, shentsize, dynent) = if self.class64 {
            (64usize, 56usize, 64u16, 16usize)
        } else {
            (52, 32, 40, 8)
        };

        // .dynstr: a leading NUL, so that offset 0 is the empty string and
        // every real name has a non-zero offset (goblin ignores DT_SONAME 0).
        let mut dynstr = vec![0u8];
        let mut add_str = |s: &str| -> u64 {
            let off = dynstr.len() as u64;
            dynstr.extend_from_slice(s.as_bytes());
            dynstr.push(0);
            off
        };
        let mut dyns: Vec<(u64, u64)> = Vec::new();
        for n in &self.needed {
            dyns.push((DT_NEEDED, add_str(n)));
        }
        if let Some(s) = &self.soname {
            dyns.push((DT_SONAME, add_str(s)));
        }
        if let Some(s) = &self.rpath {
            dyns.push((DT_RPATH, add_str(s)));
        }
        if let Some(s) = &self.runpath {
            dyns.push((DT_RUNPATH, add_str(s)));
        }
        let dynamic = self.has_dynamic();

        let phnum = 1 + usize::from(self.interp.is_some()) + usize::from(dynamic);
        let interp_off = ehsize + phnum * phentsize;
        let interp_len = self.interp.as_ref().map_or(0, |s| s.len() + 1);
        let dynstr_off = interp_off + interp_len;
        let dyn_off = align(dynstr_off + dynstr.len(), 8);
        if dynamic {
            dyns.push((DT_STRTAB, dynstr_off as u64));
            dyns.push((DT_STRSZ, dynstr.len() as u64));
            dyns.push((DT_NULL, 0));
        }
        let dyn_size = if dynamic { dyns.len() * dynent } else { 0 };
        let total = dyn_off + dyn_size;

        let mut out = Vec::with_capacity(total);
        // e_ident
        out.extend_from_slice(b"\x7fELF");
        out.push(if self.class64 { 2 } else { 1 }); // EI_CLASS
        out.push(if self.big_endian { 2 } else { 1 }); // EI_DATA
        out.push(1); // EI_VERSION
        out.push(0); // EI_OSABI: System V
        out.resize(16, 0);
        w.u16(&mut out, if self.exec { ET_EXEC } else { ET_DYN });
        w.u16(&mut out, self.machine);
        w.u32(&mut out, 1); // e_version
        w.word(&mut out, 0); // e_entry
        w.word(&mut out, ehsize as u64); // e_phoff
        w.word(&mut out, 0); // e_shoff
        w.u32(&mut out, 0); // e_flags
        w.u16(&mut out, ehsize as u16);
        w.u16(&mut out, phentsize as u16);
        w.u16(&mut out, phnum as u16);
        w.u16(&mut out, shentsize);
        w.u16(&mut out, 0); // e_shnum
        w.u16(&mut out, 0); // e_shstrndx: SHN_UNDEF
        assert_eq!(out.len(), ehsize);

        if self.interp.is_some() {
            w.phdr(&mut out, PT_INTERP, 4, interp_off, interp_len, 1);
        }
        w.phdr(&mut out, PT_LOAD, 4 | 2 | 1, 0, total, 0x1000);
        if dynamic {
            w.phdr(&mut out, PT_DYNAMIC, 4 | 2, dyn_off, dyn_size, 8);
        }
        assert_eq!(out.len(), interp_off);

        if let Some(s) = &self.interp {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(&dynstr);
        out.resize(dyn_off, 0);
        if dynamic {
            for (tag, val) in dyns {
                w.word(&mut out, tag);
                w.word(&mut out, val);
            }
        }
        assert_eq!(out.len(), total);
        out
    }
}

fn align(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Emits integers in the file's byte order and word size.
struct Writer {
    class64: bool,
    big_endian: bool,
}

impl Writer {
    fn u16(&self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn u32(&self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn u64(&self, out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// An address, offset or size: `ElfN_Addr`/`ElfN_Off`/`ElfN_Xword`
    /// (also `d_tag`/`d_val`, which have the same width).
    fn word(&self, out: &mut Vec<u8>, v: u64) {
        if self.class64 {
            self.u64(out, v);
        } else {
            self.u32(out, u32::try_from(v).expect("fits in ELF32"));
        }
    }

    /// A program header whose segment is mapped at vaddr == offset.
    fn phdr(&self, out: &mut Vec<u8>, kind: u32, flags: u32, off: usize, size: usize, align: u64) {
        let (off, size) = (off as u64, size as u64);
        self.u32(out, kind);
        if self.class64 {
            self.u32(out, flags);
        }
        self.word(out, off); // p_offset
        self.word(out, off); // p_vaddr
        self.word(out, off); // p_paddr
        self.word(out, size); // p_filesz
        self.word(out, size); // p_memsz
        if !self.class64 {
            self.u32(out, flags);
        }
        self.word(out, align);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bareroot::elf::{self, ElfClass, ElfKind};

    #[test]
    fn elfgen_round_trips_every_field() {
        let spec = ElfSpec::dyn_exe()
            .needs(&["libfoo.so.1", "libc.so.6"])
            .rpath("/opt/a:/opt/b")
            .soname("app");
        let info = elf::parse(&spec.bytes()).unwrap();
        assert_eq!(info.class, ElfClass::Elf64);
        assert!(info.little_endian);
        assert_eq!(info.machine, EM_X86_64);
        assert_eq!(info.kind, ElfKind::Executable);
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(info.needed, ["libfoo.so.1", "libc.so.6"]);
        assert_eq!(info.rpath, ["/opt/a", "/opt/b"]);
        assert!(info.runpath.is_empty());
        assert_eq!(info.soname.as_deref(), Some("app"));
        assert!(info.dynamic);
        assert!(!info.is_static());

        let spec = ElfSpec::lib("libfoo.so.1")
            .needs(&["libc.so.6"])
            .runpath("$ORIGIN/../lib:${ORIGIN}");
        let info = elf::parse(&spec.bytes()).unwrap();
        assert_eq!(info.kind, ElfKind::SharedObject);
        assert_eq!(info.interpreter, None);
        assert_eq!(info.needed, ["libc.so.6"]);
        assert!(info.rpath.is_empty());
        assert_eq!(info.runpath, ["$ORIGIN/../lib", "${ORIGIN}"]);
        assert_eq!(info.soname.as_deref(), Some("libfoo.so.1"));
        assert!(info.dynamic);
    }

    #[test]
    fn elfgen_rpath_is_dropped_when_runpath_is_present() {
        let spec = ElfSpec::lib("libx.so").rpath("/opt/r").runpath("/opt/ru");
        let info = elf::parse(&spec.bytes()).unwrap();
        assert!(info.rpath.is_empty());
        assert_eq!(info.runpath, ["/opt/ru"]);

        // An empty DT_RUNPATH still exists (and still drops DT_RPATH).
        let spec = ElfSpec::lib("libx.so").rpath("/opt/r").runpath("");
        let info = elf::parse(&spec.bytes()).unwrap();
        assert!(info.rpath.is_empty());
        assert!(info.runpath.is_empty());
    }

    #[test]
    fn elfgen_elf32_other_machines_and_big_endian() {
        let spec = ElfSpec::lib("libfoo.so.1")
            .class32()
            .machine(EM_386)
            .needs(&["libc.so.6"])
            .rpath("/usr/lib32");
        let info = elf::parse(&spec.bytes()).unwrap();
        assert_eq!(info.class, ElfClass::Elf32);
        assert!(info.little_endian);
        assert_eq!(info.machine, EM_386);
        assert_eq!(info.needed, ["libc.so.6"]);
        assert_eq!(info.rpath, ["/usr/lib32"]);
        assert_eq!(info.soname.as_deref(), Some("libfoo.so.1"));

        let spec = ElfSpec::dyn_exe()
            .interp("/lib/ld-linux.so.2")
            .class32()
            .machine(EM_386)
            .needs(&["libc.so.6"]);
        let info = elf::parse(&spec.bytes()).unwrap();
        assert_eq!(info.class, ElfClass::Elf32);
        assert_eq!(info.kind, ElfKind::Executable);
        assert_eq!(info.interpreter.as_deref(), Some("/lib/ld-linux.so.2"));

        let spec = ElfSpec::lib("libbe.so")
            .machine(EM_AARCH64)
            .big_endian()
            .needs(&["libc.so.6"])
            .runpath("/x");
        let info = elf::parse(&spec.bytes()).unwrap();
        assert_eq!(info.class, ElfClass::Elf64);
        assert!(!info.little_endian);
        assert_eq!(info.machine, EM_AARCH64);
        assert_eq!(info.needed, ["libc.so.6"]);
        assert_eq!(info.runpath, ["/x"]);
        assert_eq!(info.soname.as_deref(), Some("libbe.so"));
    }

    #[test]
    fn elfgen_static_executable_has_no_dynamic_section() {
        let spec = ElfSpec::exe();
        assert!(!spec.has_dynamic());
        let info = elf::parse(&spec.bytes()).unwrap();
        assert_eq!(info.kind, ElfKind::Executable);
        assert!(!info.dynamic);
        assert!(info.is_static());
        assert_eq!(info.soname, None);

        // A bare shared object still has a (nearly empty) dynamic section.
        let info = elf::parse(&ElfSpec::default().bytes()).unwrap();
        assert!(info.dynamic);
        assert!(info.needed.is_empty());
        assert_eq!(info.soname, None);
    }
}
