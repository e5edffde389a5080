//! bareroot's integration tests: one binary (compiled once), one module per
//! area. Tests that need external tools fail, never skip, when they are
//! missing; scripts/test.sh installs them.

#[allow(dead_code)]
mod support;

mod base;
mod cli;
mod conformance;
mod distribution;
mod e2e;
mod elf_variants;
mod elfgen;
mod engines;
mod errors;
mod faults;
mod hardening;
mod layers;
mod load;
mod multiarch;
mod names;
mod oracle;
mod pull;
mod regressions;
mod repro;
mod resolver;
mod runtime;
mod sbom;
mod scanners;
mod speed;
mod tls;
mod why;
