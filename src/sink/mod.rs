//! Output sinks: where a built image goes. Every sink reads the same OCI
//! image layout the build wrote (its blobs are used as they are, never
//! recompressed): the layout directory itself, an oci-archive, a
//! docker-archive, or a registry.

pub mod archive;
pub mod registry;
