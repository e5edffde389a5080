//! Where a built image goes, and the commands that read it back. Every sink
//! reads the OCI image layout the build wrote through `oci::read` (its blobs
//! are used as they are, never recompressed): an oci-archive or a
//! docker-archive (`archive`), a report of its contents (`inspect`), a run
//! without a container engine (`run`), and the chain that put a path in it
//! (`why`), a container engine's image store (`load`). A push to a registry
//! is `crate::registry::push`.

pub mod archive;
pub mod inspect;
pub mod load;
pub mod run;
pub mod why;
