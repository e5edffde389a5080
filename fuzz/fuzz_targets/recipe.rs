//! Recipe text → validated recipe: any input ends in Ok or a one-line
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) =
            bareroot::recipe::Recipe::parse(text, std::path::Path::new("fuzz/recipe.toml"))
        {
            let msg = bareroot::error::one_line(&e.to_string());
            assert!(!msg.contains('\n'));
        }
    }
});
