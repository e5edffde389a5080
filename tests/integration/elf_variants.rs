//! Valid but unusual ELF files: a real program with its section headers
//! stripped away (as `sstrip` does), a real program with extended section
//! numbering (more than 0xff00 sections: e_shnum 0, e_shstrndx SHN_XINDEX),
//! and big-endian s390x objects resolved through a toolchain file. 32-bit
//! objects are covered by the resolver and multi-arch tests.

use std::fs;
use std::path::Path;

use crate::elfgen::ElfSpec;
use crate::support::*;

const EM_S390: u16 = 22;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A little-endian ELF64 file without its section header table, cut after
/// the last byte a segment maps: what `sstrip` makes.
fn sstrip(elf: &[u8]) -> Vec<u8> {
    let (phoff, phnum) = (u64_at(elf, 32) as usize, u16_at(elf, 56) as usize);
    let end = (0..phnum)
        .map(|i| {
            let ph = phoff + i * 56;
            u64_at(elf, ph + 8) + u64_at(elf, ph + 32) // p_offset + p_filesz
        })
        .max()
        .unwrap() as usize;
    let mut out = elf[..end.max(phoff + phnum * 56)].to_vec();
    out[40..48].fill(0); // e_shoff
    out[58..64].fill(0); // e_shentsize, e_shnum, e_shstrndx
    out
}

/// The same file with `extra` null sections appended to its section
/// header table, rewritten at the end with ELF extended numbering.
fn extend_sections(elf: &[u8], extra: usize) -> Vec<u8> {
    let shoff = u64_at(elf, 40) as usize;
    let (shnum, shstrndx) = (u16_at(elf, 60) as usize, u16_at(elf, 62));
    let mut table = elf[shoff..shoff + shnum * 64].to_vec();
    table.resize((shnum + extra) * 64, 0);
    let total = (shnum + extra) as u64;
    assert!(
        total >= 0xff00,
        "extended numbering is for 0xff00 sections or more"
    );
    table[32..40].copy_from_slice(&total.to_le_bytes()); // section 0's sh_size
    table[40..44].copy_from_slice(&u32::from(shstrndx).to_le_bytes()); // its sh_link
    let mut out = elf.to_vec();
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let new_off = out.len() as u64;
    out.extend_from_slice(&table);
    out[40..48].copy_from_slice(&new_off.to_le_bytes());
    out[60..62].copy_from_slice(&0u16.to_le_bytes()); // e_shnum: see section 0
    out[62..64].copy_from_slice(&0xffffu16.to_le_bytes()); // SHN_XINDEX
    out
}

/// `bareroot closure --json` of one file, with the file's own path blanked.
fn closure_of(file: &Path) -> serde_json::Value {
    let out = ok(bareroot().arg("closure").arg("--json").arg(file));
    let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["file"] = serde_json::Value::Null;
    v
}

#[test]
fn stripped_and_extended_numbering_programs_resolve_like_the_original() {
    let tmp = tempdir();
    // A real, dynamically linked program with versioned glibc symbols.
    let original = Path::new("/usr/bin/ls");
    let bytes = fs::read(original).unwrap();
    assert_eq!(
        &bytes[..6],
        b"\x7fELF\x02\x01",
        "an x86-64 little-endian host"
    );
    let want = closure_of(original);
    assert!(want[0]["libraries"].as_array().unwrap().len() >= 2);

    let stripped = tmp.path().join("ls-sstripped");
    fs::write(&stripped, sstrip(&bytes)).unwrap();
    let extended = tmp.path().join("ls-extended");
    fs::write(&extended, extend_sections(&bytes, 0xff10)).unwrap();
    for (file, what) in [
        (&stripped, "no section headers"),
        (&extended, "extended section numbering"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(file, fs::Permissions::from_mode(0o755)).unwrap();
        // The loader agrees the file is a working program.
        let run = std::process::Command::new(file)
            .arg("--version")
            .output()
            .unwrap();
        assert!(run.status.success(), "{what}: the program no longer runs");
        assert_eq!(closure_of(file), want, "{what}: a different closure");
    }

    // With extended numbering the sections are still found: binutils and
    // bareroot's offline symbol-version check both read .gnu.version_r.
    let readelf = std::process::Command::new("readelf")
        .arg("-h")
        .arg(&extended)
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&readelf.stdout);
    assert!(
        header.contains(&format!(
            "Number of section headers:         0 ({})",
            u16_at(&bytes, 60) as usize + 0xff10
        )),
        "{header}"
    );
    let recipe = tmp.path().join("ext.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"ext\"\n[[binary]]\nsrc = \"{}\"\ndest = \"/bin/ls\"\n",
            extended.display()
        ),
    )
    .unwrap();
    let built = tmp.path().join("ext-out");
    build(&recipe, &built);
    let facts = bareroot::elf::parse(&fs::read(&extended).unwrap()).unwrap();
    let plain = bareroot::elf::parse(&bytes).unwrap();
    assert!(
        !plain.verneed.is_empty(),
        "ls needs versioned glibc symbols"
    );
    assert_eq!(
        facts.verneed, plain.verneed,
        "version needs read through SHN_XINDEX"
    );
    // Sections are found by name: the names are in the table SHN_XINDEX
    // points at (section 0's sh_link), past the 0xff00 limit of e_shnum.
    let ext_bytes = fs::read(&extended).unwrap();
    let by_name = bareroot::elf::section_data(&ext_bytes, ".gnu.version_r");
    assert!(by_name.is_some(), "section names through SHN_XINDEX");
    assert_eq!(
        by_name,
        bareroot::elf::section_data(&bytes, ".gnu.version_r")
    );
    assert!(bareroot::elf::has_section_headers(&ext_bytes));
    assert!(!bareroot::elf::has_section_headers(&sstrip(&bytes)));
}

/// A toolchain file for linux/s390x (big-endian 64-bit), which bareroot
/// does not embed.
const S390X: &str = r#"platform = "linux/s390x"

[elf]
machine = 22
class = 64
endian = "big"

[loader]
triplet = "s390x-linux-gnu"
at_platform = "z900"
cache_flags = 0x0303
default_dirs = ["/lib/s390x-linux-gnu", "/usr/lib/s390x-linux-gnu", "/lib", "/usr/lib"]

[sysroot]
cross = "/usr/s390x-linux-gnu"
qemu = "qemu-s390x-static"
"#;

#[test]
fn big_endian_s390x_objects_resolve_and_build() {
    let tmp = tempdir();
    let t = tmp.path();
    let sys = t.join("sysroot");
    let put = |path: &str, spec: ElfSpec| {
        let p = sys.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, spec.machine(EM_S390).big_endian().bytes()).unwrap();
    };
    put("/lib/ld64.so.1", ElfSpec::lib("ld64.so.1"));
    put(
        "/lib/s390x-linux-gnu/libc.so.6",
        ElfSpec::lib("libc.so.6").needs(&["ld64.so.1"]),
    );
    put(
        "/usr/lib/s390x-linux-gnu/libz.so.1",
        ElfSpec::lib("libz.so.1").needs(&["libc.so.6"]),
    );
    put(
        "/usr/bin/prog",
        ElfSpec::dyn_exe()
            .interp("/lib/ld64.so.1")
            .needs(&["libz.so.1", "libc.so.6"]),
    );
    // A little-endian object of the same machine is not a candidate.
    let le = sys.join("lib/libz.so.1");
    fs::write(&le, ElfSpec::lib("libz.so.1").machine(EM_S390).bytes()).unwrap();
    let tc = t.join("s390x.toml");
    fs::write(&tc, S390X).unwrap();

    let out = ok(bareroot()
        .arg("closure")
        .arg("--json")
        .arg("--platform")
        .arg("linux/s390x")
        .arg("--toolchains")
        .arg(&tc)
        .arg("--sysroot")
        .arg(&sys)
        .arg("/usr/bin/prog"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["interpreter"], "/lib/ld64.so.1", "{out}");
    let libs: Vec<(String, String)> = v[0]["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["soname"].as_str().unwrap().to_string(),
                l["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        libs.contains(&(
            "libz.so.1".into(),
            "/usr/lib/s390x-linux-gnu/libz.so.1".into()
        )),
        "{out}"
    );
    assert!(
        libs.contains(&("libc.so.6".into(), "/lib/s390x-linux-gnu/libc.so.6".into())),
        "{out}"
    );

    // An image for the platform: its config says s390x.
    let recipe = t.join("s390x-image.toml");
    fs::write(
        &recipe,
        "name = \"be\"\nplatforms = [\"linux/s390x\"]\n[[binary]]\nsrc = \"/usr/bin/prog\"\n",
    )
    .unwrap();
    let layout = t.join("out");
    ok(bareroot()
        .arg("build")
        .arg(&recipe)
        .arg("--toolchains")
        .arg(&tc)
        .arg("--sysroot")
        .arg(format!("linux/s390x={}", sys.display()))
        .arg("--output")
        .arg(&layout)
        .arg("--quiet"));
    let report: serde_json::Value =
        serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(&layout))).unwrap();
    let text = report.to_string();
    assert!(text.contains("\"s390x\""), "{text}");
    assert!(
        text.contains("usr/lib/s390x-linux-gnu/libz.so.1"),
        "the big-endian library is in the layer: {text}"
    );
}
