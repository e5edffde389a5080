//! ELF bytes → facts → closure: the fuzzed bytes are the program and also
//! every library it may ask for, in an in-memory sysroot. Parsing and
//! resolution must end in a result or an error, never a panic or a hang.
//! (The same steps replay the committed corpus in tests/regressions/elf.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bareroot::loader::harness::analyze_untrusted(data);
});
