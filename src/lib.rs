//! bareroot: assemble a minimal, reproducible OCI image from host binaries and
//! the exact shared-library closure the loader would open for them.
//!
//! The modules follow the pipeline:
//! recipe → toolchain (per platform) → ELF facts → closure → plan → layer →
//! OCI image / index → output sinks.

pub mod app;
pub mod build;
pub mod cache;
pub mod cli;
pub mod closure;
pub mod compress;
pub mod digest;
pub mod dpkg;
pub mod elf;
pub mod error;
pub mod gobuildinfo;
pub mod harness;
pub mod inspect;
pub mod layer;
pub mod ldcache;
pub mod memo;
pub mod oci;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod recipe;
pub mod run;
pub mod runtime;
pub mod sbom;
pub mod sink;
pub mod symbols;
pub mod sysroot;
pub mod timefmt;
pub mod toolchain;
pub mod why;

pub use error::{Error, Result};
