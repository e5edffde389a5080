//! Stage 3, image: the image configuration and the manifest over the
//! layer, both canonical JSON blobs in the layout. The manifest's
//! annotations say what made the bytes (bareroot's version, the
//! compressor), for whoever wonders why a digest changed.

use std::collections::BTreeMap;

use super::{ANNOTATION_COMPRESSION, ANNOTATION_VERSION};
use crate::error::Result;
use crate::layer::compress::Compression;
use crate::layer::LayerInfo;
use crate::oci::{
    self, Descriptor, History, ImageConfigJson, LayoutWriter, Manifest, RootFs, RuntimeConfig,
};
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::timefmt::rfc3339;

/// One platform's image manifest, in the layout.
pub struct Image {
    /// The manifest's descriptor, with its platform (as an index lists it).
    pub descriptor: Descriptor,
    /// The same without the platform: the subject of artifacts about it.
    pub subject: Descriptor,
}

/// Write the config and the manifest of `layer`, which holds `files` files.
pub fn image(
    recipe: &Recipe,
    platform: &Platform,
    epoch: u64,
    compression: Compression,
    layer: &LayerInfo,
    files: usize,
    layout: &mut LayoutWriter,
) -> Result<Image> {
    let config = config(recipe, platform, epoch, layer, files);
    let config = layout.put_json(oci::MEDIA_TYPE_CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config,
        layers: vec![Descriptor::of(
            layer.media_type,
            layer.digest.clone(),
            layer.size,
        )],
        annotations: BTreeMap::from([
            (
                ANNOTATION_VERSION.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (ANNOTATION_COMPRESSION.to_string(), compression.describe()),
        ]),
        artifact_type: None,
        subject: None,
    };
    let subject = layout.put_json(oci::MEDIA_TYPE_MANIFEST, &manifest)?;
    let descriptor = Descriptor {
        platform: Some(platform.into()),
        ..subject.clone()
    };
    Ok(Image {
        descriptor,
        subject,
    })
}

/// The image configuration: the recipe's `[config]`, the platform, the
/// layer's diff_id, and the epoch as every timestamp.
fn config(
    recipe: &Recipe,
    platform: &Platform,
    epoch: u64,
    layer: &LayerInfo,
    files: usize,
) -> ImageConfigJson {
    let created = rfc3339(epoch);
    let c = &recipe.config;
    let mut env = c.env.clone();
    let has = |k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if recipe.runtime.ca_certificates && !has("SSL_CERT_FILE") {
        env.push(format!("SSL_CERT_FILE={}", crate::plan::runtime::CA_BUNDLE));
    }
    ImageConfigJson {
        created: Some(created.clone()),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: RuntimeConfig {
            user: c.user.clone(),
            exposed_ports: c
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), BTreeMap::new()))
                .collect(),
            env,
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.workdir.clone(),
            labels: c.labels.clone(),
            stop_signal: c.stop_signal.clone(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("bareroot build {}", recipe.name)),
            comment: Some(format!("{files} files from the recipe and their closure")),
        }],
    }
}
