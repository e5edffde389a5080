//! `/etc/ld.so.cache` for an image, in glibc's format ("glibc-ld.so.cache",
//! version 1.1), so `dlopen("libfoo.so.1")` finds a library the image holds
//! outside the loader's default directories, as ldconfig would have made
//! it possible. Entries: every shared object of the image under the name
//! that is its DT_SONAME, sorted the way the loader's binary search expects
//! (descending by `_dl_cache_libcmp`).

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use crate::elf::{ElfInfo, ElfKind};
use crate::plan::{ItemKind, Plan};

const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;

/// Build the cache. `flags` is the ABI's cache flag word (`FLAG_ELF_LIBC6`
/// plus the architecture's, e.g. 0x0303 for x86-64); `parse` gives the ELF
/// facts of a host file.
pub fn generate(
    plan: &Plan,
    flags: i32,
    little_endian: bool,
    parse: impl Fn(&Path) -> Option<Arc<ElfInfo>>,
) -> Vec<u8> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for (path, item) in &plan.entries {
        let name = path.as_str().rsplit('/').next().unwrap_or("");
        if !(name.starts_with("lib") || name.starts_with("ld-")) || !name.contains(".so") {
            continue;
        }
        let file = match &item.kind {
            ItemKind::File { src, .. } => src.clone(),
            ItemKind::Symlink { target } => {
                // A soname link: resolve it within the image.
                let dir = path.as_path().parent().unwrap_or(Path::new("/"));
                let t = crate::loader::sysroot::normalize(&dir.join(target));
                let Some(crate::plan::Item {
                    kind: ItemKind::File { src, .. },
                    ..
                }) = crate::recipe::ImagePath::from_path(&t)
                    .ok()
                    .and_then(|p| plan.entries.get(&p))
                else {
                    continue;
                };
                src.clone()
            }
            _ => continue,
        };
        let Some(info) = parse(&file) else { continue };
        if info.kind != ElfKind::SharedObject || info.soname.as_deref() != Some(name) {
            continue;
        }
        entries.push((name.to_string(), path.as_str().to_string()));
    }
    entries.sort_by(|a, b| libcmp(b.0.as_bytes(), a.0.as_bytes()).then_with(|| a.1.cmp(&b.1)));
    entries.dedup();

    let strings_at = HEADER_LEN + ENTRY_LEN * entries.len();
    let mut strings: Vec<u8> = Vec::new();
    let mut table: Vec<u8> = Vec::new();
    let w32 = |v: u32| {
        if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let w64 = |v: u64| {
        if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    for (key, value) in &entries {
        let k = strings_at + strings.len();
        strings.extend_from_slice(key.as_bytes());
        strings.push(0);
        let v = strings_at + strings.len();
        strings.extend_from_slice(value.as_bytes());
        strings.push(0);
        table.extend_from_slice(&w32(flags as u32));
        table.extend_from_slice(&w32(k as u32));
        table.extend_from_slice(&w32(v as u32));
        table.extend_from_slice(&w32(0)); // osversion
        table.extend_from_slice(&w64(0)); // hwcap
    }
    let mut out = Vec::with_capacity(strings_at + strings.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&w32(entries.len() as u32));
    out.extend_from_slice(&w32(strings.len() as u32));
    out.push(if little_endian { 2 } else { 3 }); // cache_file_new_flags_endian_*
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&w32(0)); // no extension section
    out.extend_from_slice(&[0; 12]);
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(&table);
    out.extend_from_slice(&strings);
    out
}

/// glibc's `_dl_cache_libcmp`: digit runs compare as numbers.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let (ca, cb) = (a[i], b.get(j).copied().unwrap_or(0));
        if ca.is_ascii_digit() {
            if !cb.is_ascii_digit() {
                return Ordering::Greater;
            }
            let (mut va, mut vb) = (0u64, 0u64);
            while i < a.len() && a[i].is_ascii_digit() {
                va = va.saturating_mul(10).saturating_add((a[i] - b'0') as u64);
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                vb = vb.saturating_mul(10).saturating_add((b[j] - b'0') as u64);
                j += 1;
            }
            if va != vb {
                return va.cmp(&vb);
            }
        } else if cb.is_ascii_digit() {
            return Ordering::Less;
        } else if ca != cb {
            return ca.cmp(&cb);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&b.get(j).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_comparison() {
        assert_eq!(libcmp(b"libc.so.10", b"libc.so.9"), Ordering::Greater);
        assert_eq!(libcmp(b"libm.so.6", b"libc.so.6"), Ordering::Greater);
        assert_eq!(libcmp(b"libc.so.6", b"libc.so.6"), Ordering::Equal);
        assert_eq!(libcmp(b"libc.so", b"libc.so.6"), Ordering::Less);
    }
}
