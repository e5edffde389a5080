//! The build information the Go linker embeds in every Go program (what
//! `go version -m` prints): the Go version, the main package and module, the
//! dependency modules and the build settings. Read from the `.go.buildinfo`
//! section, or from a 16-byte-aligned search of the file when section
//! headers were stripped.
//!
//! Two layouts exist. Since Go 1.18 (flag bit 2) both strings follow the
//! 32-byte header, each prefixed with its uvarint length. Before that the
//! header holds two pointers to Go string headers (data pointer, length),
//! which are followed through the program's loadable segments.

use crate::elf;

/// The 14 bytes that start the build-info header.
pub const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_SIZE: usize = 32;
const ALIGN: usize = 16;
/// Flag bit 1: the pre-1.18 pointers are big-endian.
const FLAG_BIG_ENDIAN: u8 = 0x1;
/// Flag bit 2: the strings are inline (Go 1.18 and later).
const FLAG_INLINE: u8 = 0x2;
/// Modinfo is framed by 16-byte sentinels (cmd/go's infoStart and infoEnd).
const SENTINEL_LEN: usize = 16;
/// Strings longer than this are taken as corruption.
const MAX_STRING: u64 = 64 << 20;

/// One module: a `mod` or `dep` line of modinfo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Module {
    pub path: String,
    /// "v1.2.3", a pseudo-version, or "(devel)" for a main module built from a checkout.
    pub version: String,
    /// The go.sum hash ("h1:..."), when recorded.
    pub sum: Option<String>,
    /// The `=>` replacement that was actually built, if any. A local
    /// directory replacement has a path like "../x" and no version.
    pub replace: Option<Box<Module>>,
}

impl Module {
    /// The module whose code is in the binary: the replacement when it is
    /// another module (it has a version), else this one.
    pub fn effective(&self) -> &Module {
        match &self.replace {
            Some(r) if !r.version.is_empty() => r,
            _ => self,
        }
    }
}

/// A Go program's build information.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// The toolchain that built it: "go1.21.5" (may carry suffixes such as
    /// " X:boringcrypto").
    pub go_version: String,
    /// The main package's import path (`path` line), e.g.
    /// "github.com/containers/skopeo/cmd/skopeo".
    pub path: Option<String>,
    /// The main module (`mod` line). Absent for programs built outside
    /// module mode (GOPATH builds, as Debian's Go packages are).
    pub main: Option<Module>,
    /// Dependency modules (`dep` lines), in file order.
    pub deps: Vec<Module>,
    /// Build settings (`build` lines): ("-compiler", "gc"), ("GOARCH", "amd64"), ...
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// The release of the standard library, "1.21.5" for "go1.21.5"; None
    /// for development toolchains ("devel go1.22-abc...").
    pub fn stdlib_version(&self) -> Option<String> {
        let first = self.go_version.split_whitespace().next()?;
        let v = first.strip_prefix("go")?;
        let ok = !v.is_empty()
            && v.bytes().next().is_some_and(|b| b.is_ascii_digit())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        ok.then(|| v.to_string())
    }
}

/// The build information of an ELF Go program; None when `bytes` is not a
/// Go program or its build information cannot be decoded.
pub fn parse(bytes: &[u8]) -> Option<BuildInfo> {
    if !elf::is_elf(bytes) {
        return None;
    }
    let header = match elf::section_data(bytes, ".go.buildinfo") {
        Some(s) if s.starts_with(MAGIC) => s,
        // Scanning the whole file is for binaries stripped of section
        // headers only: with them, a Go binary names its section, and
        // scanning every library would read every byte of it.
        _ if elf::has_section_headers(bytes) => return None,
        _ => find_header(bytes)?,
    };
    let (version, modinfo) = decode_header(bytes, header)?;
    if version.is_empty() {
        return None;
    }
    let mut info = parse_modinfo(&strip_sentinels(&modinfo));
    info.go_version = String::from_utf8_lossy(&version).into_owned();
    Some(info)
}

/// The header found by its magic at a 16-byte-aligned file offset (Go
/// aligns the symbol; file offsets and addresses agree modulo the page).
fn find_header(bytes: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], MAGIC) {
        let at = from + i;
        if at % ALIGN == 0 && bytes.len() - at >= HEADER_SIZE {
            return Some(&bytes[at..]);
        }
        from = at + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// (version, framed modinfo) bytes from a header that starts with [`MAGIC`].
fn decode_header(file: &[u8], data: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if data.len() < HEADER_SIZE || !data.starts_with(MAGIC) {
        return None;
    }
    let ptr_size = data[14] as usize;
    let flags = data[15];
    if flags & FLAG_INLINE != 0 {
        let (version, rest) = decode_string(&data[HEADER_SIZE..])?;
        let (modinfo, _) = decode_string(rest).unwrap_or((&[], &[]));
        return Some((version.to_vec(), modinfo.to_vec()));
    }
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let big = flags & FLAG_BIG_ENDIAN != 0;
    let read_ptr = |b: &[u8]| -> Option<u64> {
        let b = b.get(..ptr_size)?;
        Some(match (ptr_size, big) {
            (4, false) => u32::from_le_bytes(b.try_into().ok()?) as u64,
            (4, true) => u32::from_be_bytes(b.try_into().ok()?) as u64,
            (_, false) => u64::from_le_bytes(b.try_into().ok()?),
            (_, true) => u64::from_be_bytes(b.try_into().ok()?),
        })
    };
    // Each pointer leads to a Go string header: data pointer, then length.
    let read_string = |addr: u64| -> Option<Vec<u8>> {
        let hdr = elf::read_vaddr(file, addr, 2 * ptr_size)?;
        let ptr = read_ptr(hdr)?;
        let len = read_ptr(&hdr[ptr_size..])?;
        if len == 0 {
            return Some(Vec::new());
        }
        if len > MAX_STRING {
            return None;
        }
        Some(elf::read_vaddr(file, ptr, len as usize)?.to_vec())
    };
    let version = read_string(read_ptr(&data[16..])?)?;
    let modinfo = read_ptr(&data[16 + ptr_size..])
        .and_then(read_string)
        .unwrap_or_default();
    Some((version, modinfo))
}

/// A uvarint-length-prefixed string and what follows it.
fn decode_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = uvarint(data)?;
    if len > MAX_STRING {
        return None;
    }
    let rest = &data[used..];
    let len = len as usize;
    (rest.len() >= len).then(|| (&rest[..len], &rest[len..]))
}

/// Go's encoding/binary uvarint: (value, bytes used).
fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None; // overflows 64 bits
        }
        x |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Modinfo without its framing, as `debug/buildinfo` strips it: the text
/// between two 16-byte sentinels, recognized by the newline before the end one.
fn strip_sentinels(b: &[u8]) -> String {
    if b.len() > 2 * SENTINEL_LEN && b[b.len() - SENTINEL_LEN - 1] == b'\n' {
        String::from_utf8_lossy(&b[SENTINEL_LEN..b.len() - SENTINEL_LEN]).into_owned()
    } else {
        String::new()
    }
}

/// Parse modinfo text (the part `go version -m` prints): tab-separated
/// `path`, `mod`, `dep`, `=>` and `build` lines. Unknown or malformed lines
/// are skipped. `go_version` is left empty.
pub fn parse_modinfo(text: &str) -> BuildInfo {
    let mut info = BuildInfo::default();
    // Which module the next "=>" line replaces: None, the main one, or the last dep.
    #[derive(Clone, Copy)]
    enum Last {
        None,
        Main,
        Dep,
    }
    let mut last = Last::None;
    for line in text.lines() {
        let mut f = line.split('\t');
        let key = f.next().unwrap_or("");
        match key {
            "path" => {
                if let Some(p) = f.next().filter(|p| !p.is_empty()) {
                    info.path = Some(p.to_string());
                }
                last = Last::None;
            }
            "mod" | "dep" => {
                let Some(m) = module(f) else {
                    last = Last::None;
                    continue;
                };
                if key == "mod" {
                    info.main = Some(m);
                    last = Last::Main;
                } else {
                    info.deps.push(m);
                    last = Last::Dep;
                }
            }
            "=>" => {
                let replaced = match last {
                    Last::Main => info.main.as_mut(),
                    Last::Dep => info.deps.last_mut(),
                    Last::None => None,
                };
                if let (Some(m), Some(r)) = (replaced, module(f)) {
                    m.replace = Some(Box::new(r));
                }
                last = Last::None;
            }
            "build" => {
                // "build\tKEY=VALUE"; the value may itself contain '=' or tabs.
                let rest = line.strip_prefix("build\t").unwrap_or("");
                if let Some((k, v)) = rest.split_once('=') {
                    info.settings.push((k.to_string(), v.to_string()));
                }
                last = Last::None;
            }
            _ => last = Last::None,
        }
    }
    info
}

fn module<'a>(mut f: impl Iterator<Item = &'a str>) -> Option<Module> {
    let path = f.next().filter(|p| !p.is_empty())?;
    let version = f.next().unwrap_or("");
    let sum = f.next().filter(|s| !s.is_empty());
    Some(Module {
        path: path.to_string(),
        version: version.to_string(),
        sum: sum.map(str::to_string),
        replace: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &[u8] = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
    const END: &[u8] = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";

    const MODINFO: &str = "path\texample.com/app/cmd/app\n\
        mod\texample.com/app\t(devel)\t\n\
        dep\tgithub.com/pkg/errors\tv0.9.1\th1:FEBLx1zS214owpjy7qsBeixbURkuhQAwrK5UwLGTwt4=\n\
        dep\tgolang.org/x/sys\tv0.1.0\n\
        =>\tgithub.com/fork/sys\tv0.2.0\th1:abc=\n\
        dep\texample.com/local\tv0.0.0\n\
        =>\t../local\t\t\n\
        build\t-compiler=gc\n\
        build\t-ldflags=-X main.v=1 -X a=b\n\
        build\tGOARCH=amd64\n";

    fn framed(modinfo: &str) -> Vec<u8> {
        [START, modinfo.as_bytes(), END].concat()
    }

    fn uvarint_bytes(mut x: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while x >= 0x80 {
            out.push((x as u8) | 0x80);
            x >>= 7;
        }
        out.push(x as u8);
        out
    }

    #[test]
    fn parses_modinfo_lines_and_replacements() {
        let info = parse_modinfo(MODINFO);
        assert_eq!(info.path.as_deref(), Some("example.com/app/cmd/app"));
        let main = info.main.as_ref().unwrap();
        assert_eq!(
            (main.path.as_str(), main.version.as_str()),
            ("example.com/app", "(devel)")
        );
        assert_eq!(main.sum, None);
        assert_eq!(info.deps.len(), 3);
        assert_eq!(info.deps[0].path, "github.com/pkg/errors");
        assert_eq!(info.deps[0].version, "v0.9.1");
        assert!(info.deps[0].sum.as_deref().unwrap().starts_with("h1:"));
        let sys = &info.deps[1];
        assert_eq!(sys.replace.as_ref().unwrap().path, "github.com/fork/sys");
        assert_eq!(sys.effective().path, "github.com/fork/sys");
        assert_eq!(sys.effective().version, "v0.2.0");
        // A local directory replacement keeps the original module.
        let local = &info.deps[2];
        assert_eq!(local.replace.as_ref().unwrap().path, "../local");
        assert_eq!(local.effective().path, "example.com/local");
        assert_eq!(
            info.settings,
            vec![
                ("-compiler".to_string(), "gc".to_string()),
                ("-ldflags".to_string(), "-X main.v=1 -X a=b".to_string()),
                ("GOARCH".to_string(), "amd64".to_string()),
            ]
        );
    }

    #[test]
    fn ignores_garbage_lines() {
        let info = parse_modinfo("=>\tx\tv1\n\ndep\n\tdep\nmod\t\tv1\nbuild\tnoequals\nzzz\n");
        assert_eq!(info, BuildInfo::default());
    }

    #[test]
    fn stdlib_versions() {
        let v = |s: &str| {
            BuildInfo {
                go_version: s.into(),
                ..Default::default()
            }
            .stdlib_version()
        };
        assert_eq!(v("go1.19.8").as_deref(), Some("1.19.8"));
        assert_eq!(v("go1.22.0 X:boringcrypto").as_deref(), Some("1.22.0"));
        assert_eq!(v("go1.21rc2").as_deref(), Some("1.21rc2"));
        assert_eq!(v("devel go1.23-abcdef Tue"), None);
        assert_eq!(v(""), None);
    }

    #[test]
    fn strips_only_framed_modinfo() {
        assert_eq!(strip_sentinels(&framed(MODINFO)), MODINFO);
        assert_eq!(strip_sentinels(&framed("x\n")), "x\n");
        // No newline before the end sentinel, or too short: not modinfo.
        assert_eq!(strip_sentinels(&framed("x")), "");
        assert_eq!(strip_sentinels(b"short"), "");
    }

    #[test]
    fn decodes_inline_header() {
        let mut data = MAGIC.to_vec();
        data.push(8);
        data.push(FLAG_INLINE);
        data.resize(HEADER_SIZE, 0);
        let mi = framed(MODINFO);
        data.extend(uvarint_bytes(8));
        data.extend(b"go1.21.5");
        data.extend(uvarint_bytes(mi.len() as u64));
        data.extend(&mi);
        let (version, modinfo) = decode_header(&[], &data).unwrap();
        assert_eq!(version, b"go1.21.5");
        // The sentinels are not UTF-8: they are stripped as bytes.
        assert_eq!(strip_sentinels(&modinfo), MODINFO);
        // A truncated string is refused, not read past the end.
        assert_eq!(decode_header(&[], &data[..HEADER_SIZE + 4]), None);
    }

    #[test]
    fn uvarints() {
        for x in [0u64, 1, 127, 128, 300, 16384, u32::MAX as u64, u64::MAX] {
            assert_eq!(
                uvarint(&uvarint_bytes(x)),
                Some((x, uvarint_bytes(x).len()))
            );
        }
        assert_eq!(uvarint(&[0x80, 0x80]), None);
    }

    /// A minimal little-endian ELF64 executable: one PT_LOAD mapping the
    /// whole file at `BASE`, and section headers naming `.go.buildinfo`
    /// (at `bi_off`, `bi_len` bytes) and `.shstrtab`.
    fn tiny_elf(payload: &[u8], bi_off: usize, bi_len: usize, sections: bool) -> Vec<u8> {
        const BASE: u64 = 0x400000;
        let shstr = b"\0.go.buildinfo\0.shstrtab\0";
        let mut f = vec![0u8; 64 + 56];
        f.extend_from_slice(payload);
        let shstr_off = f.len();
        f.extend_from_slice(shstr);
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let sh_off = f.len();
        let sh = |name: u32, ty: u32, addr: u64, off: u64, size: u64| {
            let mut s = Vec::with_capacity(64);
            s.extend(name.to_le_bytes());
            s.extend(ty.to_le_bytes());
            s.extend(0u64.to_le_bytes()); // flags
            s.extend(addr.to_le_bytes());
            s.extend(off.to_le_bytes());
            s.extend(size.to_le_bytes());
            s.extend(0u32.to_le_bytes()); // link
            s.extend(0u32.to_le_bytes()); // info
            s.extend(1u64.to_le_bytes()); // align
            s.extend(0u64.to_le_bytes()); // entsize
            s
        };
        let bi = 120 + bi_off;
        f.extend(sh(0, 0, 0, 0, 0));
        f.extend(sh(1, 1, BASE + bi as u64, bi as u64, bi_len as u64));
        f.extend(sh(15, 3, 0, shstr_off as u64, shstr.len() as u64));
        let total = f.len() as u64;
        // ELF header.
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1; // EV_CURRENT
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&(BASE + 120).to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        let (shoff, shnum, shstrndx) = if sections {
            (sh_off as u64, 3u16, 2u16)
        } else {
            (0, 0, 0)
        };
        f[40..48].copy_from_slice(&shoff.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        f[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
        f[60..62].copy_from_slice(&shnum.to_le_bytes());
        f[62..64].copy_from_slice(&shstrndx.to_le_bytes());
        // PT_LOAD of the whole file.
        let ph = &mut f[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes());
        ph[4..8].copy_from_slice(&5u32.to_le_bytes());
        ph[16..24].copy_from_slice(&BASE.to_le_bytes());
        ph[24..32].copy_from_slice(&BASE.to_le_bytes());
        ph[32..40].copy_from_slice(&total.to_le_bytes());
        ph[40..48].copy_from_slice(&total.to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        f
    }

    /// The pre-1.18 layout: pointers to string headers, followed through
    /// the PT_LOAD segment.
    #[test]
    fn decodes_pointer_header_through_segments() {
        const BASE: u64 = 0x400000;
        let at = |payload_off: usize| BASE + 120 + payload_off as u64;
        let version = b"go1.16.15";
        let mi = framed(MODINFO);
        // Payload: [8 pad][header 32][vers hdr 16][mod hdr 16][version][modinfo]
        let bi_off = 8; // 120 + 8 = 128, 16-aligned
        let vers_hdr = bi_off + 32;
        let mod_hdr = vers_hdr + 16;
        let vers_data = mod_hdr + 16;
        let mod_data = vers_data + version.len();
        let mut p = vec![0u8; bi_off];
        p.extend(MAGIC);
        p.push(8);
        p.push(0); // little-endian pointers
        p.extend(at(vers_hdr).to_le_bytes());
        p.extend(at(mod_hdr).to_le_bytes());
        p.extend(at(vers_data).to_le_bytes());
        p.extend((version.len() as u64).to_le_bytes());
        p.extend(at(mod_data).to_le_bytes());
        p.extend((mi.len() as u64).to_le_bytes());
        p.extend(version);
        p.extend(&mi);
        for sections in [true, false] {
            let file = tiny_elf(&p, bi_off, 32, sections);
            let info = parse(&file).unwrap_or_else(|| panic!("sections={sections}"));
            assert_eq!(info.go_version, "go1.16.15");
            assert_eq!(info.main.unwrap().path, "example.com/app");
            assert_eq!(info.deps.len(), 3);
        }
    }

    #[test]
    fn decodes_inline_header_in_elf_without_sections() {
        let mi = framed(MODINFO);
        let bi_off = 8;
        let mut p = vec![0u8; bi_off];
        p.extend(MAGIC);
        p.push(8);
        p.push(FLAG_INLINE);
        p.resize(bi_off + HEADER_SIZE, 0);
        p.extend(uvarint_bytes(8));
        p.extend(b"go1.22.1");
        p.extend(uvarint_bytes(mi.len() as u64));
        p.extend(&mi);
        let len = p.len() - bi_off;
        for sections in [true, false] {
            let info = parse(&tiny_elf(&p, bi_off, len, sections)).unwrap();
            assert_eq!(info.go_version, "go1.22.1");
            assert_eq!(info.path.as_deref(), Some("example.com/app/cmd/app"));
        }
    }

    #[test]
    fn not_go() {
        assert_eq!(parse(b"#!/bin/sh\n"), None);
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(parse(&exe), None);
    }

    /// A real Go program from the host: skopeo (scripts/test.sh installs it).
    /// Debian builds it outside module mode, so it records its main package
    /// path and Go version but no module list.
    #[test]
    fn reads_host_go_program() {
        let path = "/usr/bin/skopeo";
        let bytes = std::fs::read(path).unwrap_or_else(|e| {
            panic!("this test needs {path}: install it with `apt-get install skopeo` ({e})")
        });
        let info = parse(&bytes).expect("skopeo is a Go program");
        assert!(info.go_version.starts_with("go1."), "{info:?}");
        assert!(info.stdlib_version().is_some());
        assert_eq!(
            info.path.as_deref(),
            Some("github.com/containers/skopeo/cmd/skopeo")
        );
        if let Some(main) = &info.main {
            assert_eq!(main.path, "github.com/containers/skopeo");
        }
        assert!(info
            .settings
            .iter()
            .any(|(k, v)| k == "GOOS" && v == "linux"));
    }
}
