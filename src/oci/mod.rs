//! OCI image types (image-spec v1.1), the layout writer (`layout`) and the
//! one layout reader (`read`).
//!
//! JSON is written canonically: through `serde_json::Value`, whose maps are
//! sorted (`BTreeMap`), compact, no trailing newline.

pub mod apply;
pub mod layout;
pub mod read;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

pub use apply::Tree;
pub use layout::{LayoutWriter, PendingBlob, Staging};
pub use read::{FoundImage, Layout};

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker's schema2 manifest list and manifest, read as their OCI
/// equivalents (the same fields).
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Manifests, indexes and configs larger than this are refused unread.
pub const MAX_JSON: u64 = 4 << 20;

/// The annotations naming the image an image is built on.
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// When the image was made: the epoch, as every other timestamp.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// The image's full reference (`docker.io/library/jq:latest`), by which
/// containerd, nerdctl and Docker 25+ name an imported image.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const LAYOUT_VERSION: &str = "1.0.0";

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// REQUIRED: the media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// REQUIRED: "sha256:<hex>", checked when parsed.
    pub digest: Digest,
    /// REQUIRED: size in bytes.
    pub size: u64,
    /// OPTIONAL: only in an index's manifests.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<OciPlatform>,
    /// OPTIONAL.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    /// OPTIONAL: the type of an artifact manifest this points at.
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A plain descriptor of some content.
    pub fn of(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            artifact_type: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl From<&Platform> for OciPlatform {
    fn from(p: &Platform) -> Self {
        OciPlatform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
}

impl OciPlatform {
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    /// OPTIONAL: set on artifact manifests (an attached SBOM).
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
    /// OPTIONAL: the manifest an artifact refers to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subject: Option<Descriptor>,
}

pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const MEDIA_TYPE_SPDX: &str = "application/spdx+json";

/// An image index (also the shape of a layout's `index.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// The image configuration (the parts bareroot writes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageConfigJson {
    /// OPTIONAL: combined date and time the image was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    /// REQUIRED.
    pub architecture: String,
    /// REQUIRED.
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RuntimeConfig,
    /// REQUIRED.
    pub rootfs: RootFs,
    #[serde(default, deserialize_with = "null_as_default")]
    pub history: Vec<History>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "BTreeMap::is_empty",
        default,
        deserialize_with = "null_as_default"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(
        rename = "Env",
        skip_serializing_if = "Vec::is_empty",
        default,
        deserialize_with = "null_as_default"
    )]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub working_dir: Option<String>,
    #[serde(
        rename = "Labels",
        skip_serializing_if = "BTreeMap::is_empty",
        default,
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "Volumes",
        skip_serializing_if = "BTreeMap::is_empty",
        default,
        deserialize_with = "null_as_default"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub stop_signal: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    /// REQUIRED: "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// REQUIRED: sha256 of each uncompressed layer.
    pub diff_ids: Vec<Digest>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<String>,
    /// The entry made no layer (a base's ENV, CMD, … steps).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub empty_layer: Option<bool>,
}

/// Docker writes `null` for an empty list or map.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Canonical JSON bytes: sorted keys, compact.
pub fn canonical_json<T: Serialize>(v: &T) -> Vec<u8> {
    let value = serde_json::to_value(v).expect("OCI types always serialize");
    serde_json::to_vec(&value).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let d = Descriptor::of("m", Digest::of(b""), 1);
        assert_eq!(
            String::from_utf8(canonical_json(&d)).unwrap(),
            format!(
                r#"{{"digest":"{}","mediaType":"m","size":1}}"#,
                Digest::of(b"")
            )
        );
    }

    #[test]
    fn digests_are_validated_when_parsed() {
        let good = Digest::of(b"").to_string();
        assert_eq!(Digest::parse(&good).unwrap().to_string(), good);
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            good.to_uppercase(),
            format!("sha512:{}", "0".repeat(128)),
            format!("{good}0"),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
            let json = format!(r#"{{"digest":"{bad}","mediaType":"m","size":1}}"#);
            let e = serde_json::from_str::<Descriptor>(&json).unwrap_err();
            assert!(e.to_string().contains("invalid digest"), "{e}");
        }
    }
}
