//! Stage 3, image: the image configuration and the manifest over the
//! layer, both canonical JSON blobs in the layout. The manifest's
//! annotations say what made the bytes (bareroot's version, the
//! compressor), for whoever wonders why a digest changed.

use std::collections::{BTreeMap, BTreeSet};

use super::{ANNOTATION_COMPRESSION, ANNOTATION_VERSION};
use crate::base::Base;
use crate::digest::Digest;
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
    /// The base it is built on: its name and manifest digest.
    pub base: Option<(String, Digest)>,
}

/// Write the config and the manifest of `layer`, which holds `files` files,
/// over the base's layers when it is stacked on one (their blobs put in the
/// layout as they are).
#[allow(clippy::too_many_arguments)]
pub fn image(
    recipe: &Recipe,
    platform: &Platform,
    epoch: u64,
    compression: Compression,
    layer: &LayerInfo,
    files: usize,
    base: Option<&Base>,
    vcs: &BTreeMap<String, String>,
    layout: &mut LayoutWriter,
) -> Result<Image> {
    let mut config = config(recipe, platform, epoch, layer, files);
    let mut layers = Vec::new();
    let mut annotations = BTreeMap::new();
    if let Some(base) = base {
        on_base(&mut config, recipe, base);
        if !base.squash {
            for l in &base.layers {
                layout.import_blob(&l.blob, &l.descriptor.digest)?;
                layers.push(l.descriptor.clone());
            }
        }
        annotations.insert(oci::ANNOTATION_BASE_NAME.to_string(), base.name.clone());
        annotations.insert(
            oci::ANNOTATION_BASE_DIGEST.to_string(),
            base.digest.to_string(),
        );
    }
    layers.push(Descriptor::of(
        layer.media_type,
        layer.digest.clone(),
        layer.size,
    ));
    let config = layout.put_json(oci::MEDIA_TYPE_CONFIG, &config)?;
    annotations.extend([
        (
            ANNOTATION_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (ANNOTATION_COMPRESSION.to_string(), compression.describe()),
        (oci::ANNOTATION_CREATED.to_string(), rfc3339(epoch)),
    ]);
    annotations.extend(vcs.clone());
    // The recipe's own, over bareroot's.
    annotations.extend(recipe.annotations.clone());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
        config,
        layers,
        annotations,
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
        base: base.map(|b| (b.name.clone(), b.digest.clone())),
    })
}

/// The config of an image on `base`: the base's layers' diff_ids and
/// history before ours (stacked), or a history line naming the base
/// (squashed); with `config = true`, the base's runtime config under each
/// `[config]` key the recipe sets.
fn on_base(config: &mut ImageConfigJson, recipe: &Recipe, base: &Base) {
    let ours = config.history.pop();
    if base.squash {
        if let Some(mut h) = ours {
            h.comment = Some(format!(
                "{}, squashed onto base {}@{}",
                h.comment.unwrap_or_default(),
                base.name,
                base.digest
            ));
            config.history = vec![h];
        }
    } else {
        let mut diff_ids: Vec<Digest> = base.layers.iter().map(|l| l.diff_id.clone()).collect();
        diff_ids.append(&mut config.rootfs.diff_ids);
        config.rootfs.diff_ids = diff_ids;
        config.history = base.config.history.clone();
        // A base without history (a hand-made layout) still gets an entry
        // per layer, so history and layers agree.
        let layered = config
            .history
            .iter()
            .filter(|h| h.empty_layer != Some(true))
            .count();
        for i in layered..base.layers.len() {
            config.history.push(History {
                created: None,
                created_by: Some(format!("base {} layer {}", base.name, i + 1)),
                comment: None,
                author: None,
                empty_layer: None,
            });
        }
        config.history.extend(ours);
    }
    if !base.inherit_config {
        return;
    }
    inherit(&mut config.config, &base.config.config, &recipe.config.set);
}

/// The base's runtime config `b` under ours `c`: each key in `set` (the
/// `[config]` keys the recipe set) keeps ours.
fn inherit(c: &mut RuntimeConfig, b: &RuntimeConfig, set: &BTreeSet<&'static str>) {
    // Scalars and lists: the recipe's when it sets them, else the base's.
    // Setting an entrypoint drops the base's cmd, as a Dockerfile's
    // ENTRYPOINT does (the cmd was the base entrypoint's arguments).
    if !set.contains("entrypoint") {
        c.entrypoint = b.entrypoint.clone();
        if !set.contains("cmd") {
            c.cmd = b.cmd.clone();
        }
    }
    if !set.contains("workdir") {
        c.working_dir = b.working_dir.clone();
    }
    if !set.contains("user") {
        c.user = b.user.clone();
    }
    if !set.contains("stop_signal") {
        c.stop_signal = b.stop_signal.clone();
    }
    // Variables, labels, ports and volumes: the base's, with the recipe's
    // added and winning by name.
    let mut env: Vec<String> = b.env.clone();
    let ours: Vec<String> = if set.contains("env") {
        std::mem::take(&mut c.env)
    } else {
        // What bareroot adds itself (SSL_CERT_FILE), and the default PATH
        // only when the base has none (a rootfs tarball has no config).
        let base_has_path = env.iter().any(|e| e.starts_with("PATH="));
        c.env
            .iter()
            .filter(|e| !(base_has_path && e.starts_with("PATH=")))
            .cloned()
            .collect()
    };
    for e in ours {
        let key = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    c.env = env;
    for (k, v) in &b.labels {
        c.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in &b.exposed_ports {
        c.exposed_ports
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    for (k, v) in &b.volumes {
        c.volumes.entry(k.clone()).or_insert_with(|| v.clone());
    }
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
                .map(|p| (p.clone(), serde_json::json!({})))
                .collect(),
            env,
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.workdir.clone(),
            labels: c.labels.clone(),
            volumes: c
                .volumes
                .iter()
                .map(|v| (v.clone(), serde_json::json!({})))
                .collect(),
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
            author: None,
            empty_layer: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RuntimeConfig {
        RuntimeConfig {
            env: vec!["PATH=/base/bin".into(), "LANG=C.UTF-8".into()],
            entrypoint: Some(vec!["/bin/base".into()]),
            cmd: Some(vec!["--serve".into()]),
            working_dir: Some("/srv".into()),
            user: Some("1000".into()),
            labels: BTreeMap::from([("a".into(), "base".into()), ("b".into(), "base".into())]),
            volumes: BTreeMap::from([("/data".into(), serde_json::json!({}))]),
            stop_signal: Some("SIGINT".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_recipe_s_keys_win_and_the_rest_is_the_base_s() {
        // Nothing set: everything is the base's; our default PATH yields
        // to the base's, SSL_CERT_FILE stays.
        let mut c = RuntimeConfig {
            env: vec!["PATH=/usr/bin".into(), "SSL_CERT_FILE=/x".into()],
            ..Default::default()
        };
        inherit(&mut c, &base(), &BTreeSet::new());
        assert_eq!(
            c.env,
            ["PATH=/base/bin", "LANG=C.UTF-8", "SSL_CERT_FILE=/x"]
        );
        assert_eq!(c.cmd.as_deref(), Some(&["--serve".to_string()][..]));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert!(c.volumes.contains_key("/data"));

        // An entrypoint of ours drops the base's cmd; env and labels merge
        // by name, ours winning.
        let mut c = RuntimeConfig {
            entrypoint: Some(vec!["/usr/bin/jq".into()]),
            env: vec!["LANG=de_DE.UTF-8".into(), "FOO=1".into()],
            labels: BTreeMap::from([("a".into(), "ours".into())]),
            ..Default::default()
        };
        inherit(
            &mut c,
            &base(),
            &BTreeSet::from(["entrypoint", "env", "labels"]),
        );
        assert_eq!(
            c.entrypoint.as_deref(),
            Some(&["/usr/bin/jq".to_string()][..])
        );
        assert_eq!(c.cmd, None);
        assert_eq!(c.env, ["PATH=/base/bin", "LANG=de_DE.UTF-8", "FOO=1"]);
        assert_eq!(c.labels["a"], "ours");
        assert_eq!(c.labels["b"], "base");

        // A base without PATH (a rootfs tarball) leaves ours.
        let mut c = RuntimeConfig {
            env: vec!["PATH=/usr/bin".into()],
            ..Default::default()
        };
        inherit(&mut c, &RuntimeConfig::default(), &BTreeSet::new());
        assert_eq!(c.env, ["PATH=/usr/bin"]);
    }
}
