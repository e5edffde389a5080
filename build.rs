//! Records the versions of the compressors Cargo.lock pins, so each image
//! manifest can say which deflate and zstd made its layer (a compressor
//! upgrade can change every layer digest; the annotation shows why).

use std::path::Path;

fn main() {
    let lock = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let version = |name: &str| -> String {
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l == format!("name = \"{name}\"") {
                if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                    return v.trim_end_matches('"').to_string();
                }
            }
        }
        "unknown".to_string()
    };
    println!(
        "cargo:rustc-env=BAREROOT_ZLIB_RS_VERSION={}",
        version("zlib-rs")
    );
    // zstd-sys versions read "2.1.3+zstd.1.5.7": the library is after "zstd.".
    let zstd = version("zstd-sys");
    let zstd = zstd.split_once("+zstd.").map_or(zstd.as_str(), |(_, v)| v);
    println!("cargo:rustc-env=BAREROOT_ZSTD_VERSION={zstd}");
}
