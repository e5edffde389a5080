//! bareroot's integration tests: one binary (compiled once), one module per
//! area. Tests that need external tools fail, never skip, when they are
//! missing; scripts/test.sh installs them.

mod elfgen;
mod resolver;
mod support;
