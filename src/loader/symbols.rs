//! Offline symbol-version check: every versioned symbol an ELF object in the
//! image needs (`.gnu.version_r`, e.g. `GLIBC_2.34`) must be defined
//! (`.gnu.version_d`) by the library that provides it in the image. Catches
//! at build time what the loader otherwise reports on the cluster:
//! "version `GLIBC_2.38' not found".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::elf::ElfInfo;
use crate::loader::closure::{Closure, Resolver, Side};
use crate::loader::sysroot;

/// One analyzed root object and its closure.
#[derive(Clone, Debug)]
pub struct Checked {
    pub label: String,
    pub root_side: Side,
    pub root: PathBuf,
    pub closure: Closure,
}

/// Check every object of every closure; the error names the object, the
/// version, the library and the newest version that library has.
pub fn check(resolver: &Resolver, checked: &[Checked]) -> Result<(), String> {
    for c in checked {
        let info_of = |side: Side, path: &PathBuf| -> Option<Arc<ElfInfo>> {
            let real = sysroot::resolve(resolver.fs(side), path).ok()?.real;
            resolver.parse(side, &real).ok()
        };
        // name → provider, by the name asked for and by DT_SONAME.
        let mut providers: BTreeMap<String, Arc<ElfInfo>> = BTreeMap::new();
        let mut objects: Vec<(PathBuf, Arc<ElfInfo>)> = Vec::new();
        if let Some(root) = info_of(c.root_side, &c.root) {
            objects.push((c.root.clone(), root));
        }
        for dep in c.closure.interpreter.iter().chain(&c.closure.libraries) {
            let Ok(info) = resolver.parse(dep.side, &dep.real) else {
                continue;
            };
            providers.insert(dep.name.clone(), info.clone());
            if let Some(so) = &info.soname {
                providers.insert(so.clone(), info.clone());
            }
            if !objects.iter().any(|(p, _)| p == &dep.path) {
                objects.push((dep.path.clone(), info));
            }
        }
        for (path, info) in &objects {
            for (file, versions) in &info.verneed {
                let Some(provider) = providers.get(file) else {
                    continue;
                };
                for v in versions {
                    if provider.verdef.iter().any(|d| d == v) {
                        continue;
                    }
                    let fam = family(v);
                    let newest = provider
                        .verdef
                        .iter()
                        .filter(|d| family(d) == fam)
                        .max_by(|a, b| version_key(a).cmp(&version_key(b)));
                    let has = match newest {
                        Some(n) => format!("provides up to `{n}`"),
                        None => format!("provides no `{fam}` versions"),
                    };
                    return Err(format!(
                        "{}: `{}` needs `{v}` from `{file}`, the image's {file} {has}",
                        c.label,
                        path.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// "GLIBC_2.38" → "GLIBC_"; "GLIBCXX_3.4.30" → "GLIBCXX_".
fn family(v: &str) -> &str {
    let end = v
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| i + 1)
        .unwrap_or(0);
    &v[..end]
}

/// Numeric parts for ordering ("2.9" < "2.36").
fn version_key(v: &str) -> Vec<u64> {
    v[family(v).len()..]
        .split('.')
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_order() {
        assert_eq!(family("GLIBC_2.38"), "GLIBC_");
        assert_eq!(family("GLIBCXX_3.4.30"), "GLIBCXX_");
        assert_eq!(family("CXXABI_1.3.13"), "CXXABI_");
        assert!(version_key("GLIBC_2.9") < version_key("GLIBC_2.36"));
    }
}
