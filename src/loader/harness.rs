//! Untrusted ELF bytes through every step that reads them, in memory: the
//! fuzz target `elf_closure` and the regression corpus test
//! (`tests/integration/regressions.rs`) share it, so an input the fuzzer
//! found is replayed exactly.

use crate::elf::{self, DlopenPriority, ElfInfo};
use crate::loader::closure::{LoaderConfig, Resolver, Root, Side};
use crate::loader::sysroot::MemFs;

/// Parse `bytes`, read their Go build information, then resolve the
/// closure of a program made of them in an in-memory sysroot where the
/// same bytes are also every library and interpreter it may ask for. The
/// parse result is returned; the closure must end, with a result or an
/// error, never a panic or a hang.
pub fn analyze_untrusted(bytes: &[u8]) -> Result<ElfInfo, String> {
    let parsed = elf::parse(bytes);
    let _ = elf::section_data(bytes, ".go.buildinfo");
    let _ = crate::gobuildinfo::parse(bytes);
    let mut fs = MemFs::new();
    fs.file("/bin/prog", bytes.to_vec())
        .file("/lib/x86_64-linux-gnu/libc.so.6", bytes.to_vec())
        .file("/lib/x86_64-linux-gnu/libregress.so.1", bytes.to_vec())
        .file("/lib/x86_64-linux-gnu/libz.so.1", bytes.to_vec())
        .file("/lib64/ld-linux-x86-64.so.2", bytes.to_vec())
        .symlink("/lib/x86_64-linux-gnu/libloop.so", "libloop.so")
        .file(
            "/etc/ld.so.conf",
            b"include /etc/ld.so.conf.d/*.conf\n/opt/lib\n".to_vec(),
        );
    let config = LoaderConfig {
        default_dirs: vec!["/lib/x86_64-linux-gnu".into(), "/lib".into()],
        lib: "lib/x86_64-linux-gnu".into(),
        platform: "x86_64".into(),
        flags_mask: 0,
        flags: 0,
        dlopen: Some(DlopenPriority::Suggested),
    };
    let resolver = Resolver::new(&fs, &fs, config);
    let root = Root {
        side: Side::Sysroot,
        path: "/bin/prog".into(),
        image_path: "/usr/bin/prog".into(),
    };
    let _ = resolver.closure(&root);
    parsed
}
