//! Stage 4, SBOM: the SPDX document of one platform's image, beside
//! `index.json` (`sbom-<platform>.spdx.json`) and, with `--attach-sbom`, as
//! an OCI artifact whose subject is the image manifest. The document is a
//! function of the layer's cache key (every path, mode and input digest,
//! the package metadata files, bareroot's version), the manifest digest,
//! name, tag and platform, and what it reads outside the plan
//! (`sbom::outside_facts`): it is cached beside the layer under that name.

use std::collections::BTreeMap;

use super::image::Image;
use super::layer::BuiltLayer;
use super::plan::Planned;
use super::BuildOptions;
use crate::digest::{self, Digest};
use crate::error::Result;
use crate::oci::{self, Descriptor, LayoutWriter, Manifest};
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::sbom;
use crate::timefmt::rfc3339;

/// The SPDX document, written into the layout (`sbom-<platform>.spdx.json`)
/// as it was made or copied from the cache, never held whole in memory.
pub struct Sbom {
    /// Its name in the layout.
    file: String,
    /// Made by this build (rather than taken from the cache).
    fresh: bool,
    /// Its name in the layer cache.
    cache_name: String,
}

/// Make (or take from the cache) the SBOM of one platform's image, into
/// the layout.
#[allow(clippy::too_many_arguments)]
pub fn sbom(
    recipe: &Recipe,
    platform: &Platform,
    epoch: u64,
    opts: &BuildOptions,
    planned: &Planned,
    layer: &BuiltLayer,
    image: &Image,
    layout: &mut LayoutWriter,
) -> Result<Sbom> {
    let digest = &image.descriptor.digest;
    let outside = match &layer.facts {
        Some(p) => p.outside.clone(),
        None => sbom::outside_facts(&planned.plan, &planned.dbs),
    };
    let id = format!(
        "{}\0{}\0{platform}\0{digest}\0{outside}",
        recipe.name, recipe.tag
    );
    let cache_name = format!("sbom-{}.spdx.json", Digest::of(id.as_bytes()).hex());
    let file = super::sbom_file_name(platform);
    let cache = opts.cache.as_ref().filter(|_| !opts.no_cache);
    if let (Some(c), Some(k)) = (cache, &layer.key) {
        if let Some(kept) = c.get_extra(k, &cache_name) {
            layout.put_file_from(&file, &kept)?;
            return Ok(Sbom {
                file,
                fresh: false,
                cache_name,
            });
        }
    }
    let input = sbom::SbomInput {
        name: &recipe.name,
        tag: &recipe.tag,
        platform,
        epoch,
        manifest_digest: digest.as_str(),
        plan: &planned.plan,
        dbs: &planned.dbs,
        digests: digest::Source {
            read: layer.read.as_ref(),
        },
        prepared: layer.facts.as_ref(),
        base: image.base.as_ref().map(|(n, d)| (n.as_str(), d)),
    };
    layout.put_file_with(&file, |w| sbom::write_spdx(&input, w))?;
    Ok(Sbom {
        file,
        fresh: true,
        cache_name,
    })
}

impl Sbom {
    /// Put the SBOM in the cache (when made now); with `attach`, also as an
    /// artifact about `image`, whose descriptor is returned for
    /// `index.json`.
    pub fn store(
        &self,
        opts: &BuildOptions,
        layer: &BuiltLayer,
        epoch: u64,
        image: &Image,
        layout: &mut LayoutWriter,
    ) -> Result<Option<Descriptor>> {
        if let (true, Some(c), Some(k)) = (self.fresh, &opts.cache, &layer.key) {
            // A cache that can't be written only costs time next build.
            let _ = c.put_extra(k, &self.cache_name, &layout.file_path(&self.file));
        }
        if !opts.attach_sbom {
            return Ok(None);
        }
        let blob = layout.put_blob_of_file(oci::MEDIA_TYPE_SPDX, &self.file)?;
        let empty = layout.put_bytes(oci::MEDIA_TYPE_EMPTY, b"{}")?;
        let artifact = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_TYPE_MANIFEST.into()),
            config: empty,
            layers: vec![blob],
            annotations: BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                rfc3339(epoch),
            )]),
            artifact_type: Some(oci::MEDIA_TYPE_SPDX.into()),
            subject: Some(image.subject.clone()),
        };
        let mut d = layout.put_json(oci::MEDIA_TYPE_MANIFEST, &artifact)?;
        d.artifact_type = Some(oci::MEDIA_TYPE_SPDX.into());
        Ok(Some(d))
    }
}
