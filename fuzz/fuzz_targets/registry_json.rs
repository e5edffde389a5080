//! A registry's manifest bytes → an index or a manifest, then the platforms
//! chosen from an index: any input ends in Ok or a one-line error, never a
//! panic. The first byte picks the media type the bytes are served as.
#![no_main]

use bareroot::platform::Platform;
use bareroot::registry::pull::{choose, parse_manifest, platform_matches, ACCEPTED};
use bareroot::registry::Fetched;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let media_type = ACCEPTED
        .get(pick as usize % (ACCEPTED.len() + 1))
        .copied()
        .unwrap_or("application/vnd.docker.distribution.manifest.v1+prettyjws");
    match parse_manifest(media_type, bytes) {
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
        Ok(Fetched::Manifest(_)) => {}
        Ok(Fetched::Index(index)) => {
            let wanted: Vec<Platform> = ["linux/amd64", "linux/arm64", "linux/arm"]
                .iter()
                .map(|p| p.parse().expect("a valid platform"))
                .collect();
            match choose(&index, &wanted) {
                Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
                // Each chosen manifest is one a wanted platform matched
                // (several platforms may share one, so not one each).
                Ok(chosen) => {
                    for d in chosen {
                        let p = d.platform.as_ref().expect("chosen by its platform");
                        assert!(wanted.iter().any(|w| {
                            platform_matches(w, &p.os, &p.architecture, p.variant.as_deref())
                        }));
                    }
                }
            }
        }
    }
});
