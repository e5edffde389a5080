//! bareroot: assemble a minimal, reproducible OCI image from host binaries and
//! the exact shared-library closure the loader would open for them.
//!
//! The modules follow the pipeline (`ARCHITECTURE.md` is the map):
//! recipe → toolchain (per platform) → ELF facts → loader (closure) → plan →
//! layer → OCI image / index → output sinks; `build` runs the stages in order.

// Vocabulary every stage shares.
pub mod digest;
pub mod error;
pub mod memo;
pub mod platform;
pub mod progress;
pub mod statcache;
pub mod timefmt;
pub mod vcs;

// Inputs, in pipeline order.
pub mod app;
pub mod base;
pub mod build;
pub mod cache;
pub mod cli;
pub mod dpkg;
pub mod elf;
pub mod gobuildinfo;
pub mod layer;
pub mod loader;
pub mod oci;
pub mod plan;
pub mod recipe;
pub mod registry;
pub mod sbom;
pub mod sink;
pub mod toolchain;

pub use error::{Error, Result};
