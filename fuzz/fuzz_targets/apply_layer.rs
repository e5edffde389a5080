//! Untrusted layer bytes → `oci::apply::Tree`: the first two bytes (little
//! endian) are the length of the first layer, the rest is the second. Any
//! input ends in Ok or a one-line error, never a panic, nothing is written
//! beside the root, and after every layer (applied or refused) the map and
//! the disk agree.
#![no_main]

use std::path::{Path, PathBuf};

use bareroot::oci::apply::{EntryKind, Tree};
use bareroot::recipe::ImagePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data {
        [a, b, rest @ ..] => rest.split_at((u16::from_le_bytes([*a, *b]) as usize).min(rest.len())),
        _ => (data, &[][..]),
    };
    let base = std::env::temp_dir().join(format!("bareroot-fuzz-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (root, outside) = (base.join("root"), base.join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let mut tree = Tree::new(&root).unwrap();
    for (i, layer) in [first, second].into_iter().enumerate() {
        if let Err(e) = tree.apply(layer, &format!("layer {i}")) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        check(&tree, &outside);
    }
    std::fs::remove_dir_all(&base).unwrap();
});

fn check(tree: &Tree, outside: &Path) {
    assert_eq!(
        std::fs::read_dir(outside).unwrap().count(),
        0,
        "wrote outside the root"
    );
    for (path, e) in tree.entries() {
        let meta = std::fs::symlink_metadata(tree.host_path(path));
        match &e.kind {
            EntryKind::Dir => assert!(meta.unwrap().is_dir(), "{path}"),
            EntryKind::File { .. } => assert!(meta.unwrap().is_file(), "{path}"),
            EntryKind::Symlink { .. } => assert!(meta.unwrap().is_symlink(), "{path}"),
            EntryKind::HardLink { target } => {
                assert!(meta.unwrap().is_file(), "{path}");
                assert!(matches!(
                    tree.get(target).map(|t| &t.kind),
                    Some(EntryKind::File { .. })
                ));
            }
            EntryKind::Special { .. } => assert!(meta.is_err(), "{path} is on disk"),
        }
        if let Some(to) = tree.resolve(path) {
            assert!(
                tree.get(&to).is_some(),
                "{path} resolves to {to}, not an entry"
            );
        }
    }
    let mut on_disk = Vec::new();
    walk(tree.root(), &mut on_disk);
    for p in on_disk {
        let rel = p.strip_prefix(tree.root()).unwrap();
        let at = ImagePath::from_path(rel).unwrap();
        assert!(
            tree.get(&at).is_some(),
            "{} is on disk, not in the tree",
            p.display()
        );
    }
}

/// Everything under `dir`, symlinks not followed.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            walk(&p, out);
        }
        out.push(p);
    }
}
