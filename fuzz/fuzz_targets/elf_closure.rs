//! ELF bytes → facts → closure: the fuzzed bytes are the program and also
//! every library it may ask for, in an in-memory sysroot. Parsing and
//! resolution must end in a result or an error, never a panic or a hang.
#![no_main]

use bareroot::closure::{LoaderConfig, Resolver, Root, Side};
use bareroot::sysroot::MemFs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bareroot::elf::parse(data);
    let _ = bareroot::elf::section_data(data, ".go.buildinfo");
    let _ = bareroot::gobuildinfo::parse(data);
    let mut fs = MemFs::new();
    fs.file("/bin/prog", data.to_vec())
        .file("/lib/x86_64-linux-gnu/libc.so.6", data.to_vec())
        .file("/lib64/ld-linux-x86-64.so.2", data.to_vec())
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
        dlopen: Some(bareroot::elf::DlopenPriority::Suggested),
    };
    let resolver = Resolver::new(&fs, &fs, config);
    let root = Root {
        side: Side::Sysroot,
        path: "/bin/prog".into(),
        image_path: "/usr/bin/prog".into(),
    };
    let _ = resolver.closure(&root);
});
