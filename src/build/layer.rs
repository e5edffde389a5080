//! Stage 2, layer: the plan as one compressed tar blob in the layout, from
//! the layer cache when every input's digest is already known and the cache
//! holds the key, else written (with the SBOM's facts gathered on a second
//! thread meanwhile). A written layer reaches the disk while the later
//! stages run: [`BuiltLayer::commit`] waits for it and stores it in the
//! cache.

use std::path::Path;

use super::plan::Planned;
use super::{trace, BuildOptions};
use crate::cache::Cache;
use crate::digest::{self, Inputs};
use crate::error::Result;
use crate::layer::{self, LayerInfo};
use crate::oci::{LayoutWriter, PendingBlob};
use crate::platform::Platform;
use crate::sbom::{self, Prepared};

/// One platform's layer, in the layout or on its way there.
pub struct BuiltLayer {
    pub info: LayerInfo,
    /// The layer's cache key, when there is a cache (it also keys the
    /// SBOM).
    pub key: Option<String>,
    /// The inputs' digests as the layer pass read them (or as the cache key
    /// was made of): the key and the SBOM describe those bytes even if a
    /// file changes afterwards.
    pub read: Option<Inputs>,
    /// What the SBOM needs besides the digests, when gathered meanwhile.
    pub facts: Option<Prepared>,
    /// A freshly written blob still being synced.
    pending: Option<PendingBlob>,
}

/// Make the layer of `planned`: from the cache, else written.
pub fn layer(
    planned: &Planned,
    platform: &Platform,
    epoch: u64,
    opts: &BuildOptions,
    layout: &mut LayoutWriter,
) -> Result<BuiltLayer> {
    let t0 = std::time::Instant::now();
    let cache = opts.cache.as_ref().filter(|_| !opts.no_cache);
    if let Some(hit) = cached(planned, epoch, opts, cache, layout)? {
        trace("layer from the cache", t0);
        return Ok(hit);
    }
    let built = write(planned, platform, epoch, opts, layout)?;
    trace("layer written", t0);
    Ok(built)
}

/// The cached layer, when every input's digest is known from the stat
/// cache (or earlier in this process) and the cache has the key. Making the
/// key otherwise would read every input once more before the layer pass,
/// which computes the digests as it reads; an entry missed that way is
/// rebuilt to the same bytes and stored again.
fn cached(
    planned: &Planned,
    epoch: u64,
    opts: &BuildOptions,
    cache: Option<&Cache>,
    layout: &mut LayoutWriter,
) -> Result<Option<BuiltLayer>> {
    let Some(cache) = cache else {
        return Ok(None);
    };
    let inputs: Vec<&Path> = planned.plan.input_files().collect();
    let Some(known) = digest::all_known(&inputs) else {
        return Ok(None);
    };
    let source = digest::Source { read: Some(&known) };
    let key = Cache::key(&planned.plan, epoch, opts.compression, source)?;
    let Some((info, blob)) = cache.get(&key) else {
        return Ok(None);
    };
    layout.import_blob(&blob, &info.digest)?;
    Ok(Some(BuiltLayer {
        info,
        key: Some(key),
        // The SBOM, if made, describes the digests the key was made of.
        read: Some(known),
        facts: None,
        pending: None,
    }))
}

/// Write the layer, gathering the SBOM's facts on another thread.
fn write(
    planned: &Planned,
    platform: &Platform,
    epoch: u64,
    opts: &BuildOptions,
    layout: &mut LayoutWriter,
) -> Result<BuiltLayer> {
    let plan = &planned.plan;
    let (files, bytes) = plan.file_stats();
    let (file, temp) = layout.temp_file()?;
    opts.progress.stage(format!(
        "{platform}: writing the layer ({files} files, {} MB, {})",
        bytes / 1_000_000,
        opts.compression
    ));
    let (written, facts) = std::thread::scope(|scope| {
        let prepare =
            std::thread::Builder::new().spawn_scoped(scope, || sbom::prepare(plan, &planned.dbs));
        let written = layer::write_layer(
            plan,
            epoch,
            opts.compression,
            opts.jobs(),
            &opts.progress,
            file,
            &temp,
        );
        // Without a thread, or on an error, the SBOM gathers the facts
        // itself if it is made (and reports the error then).
        let facts = prepare.ok().and_then(|t| {
            t.join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .ok()
        });
        (written, facts)
    });
    let (info, file, read) = written?;
    // The layer reaches the disk while the JSON and the SBOM are made; it
    // is in place before they are cached or referred to.
    let pending = Some(layout.commit_later(file, temp, info.digest.clone()));
    // The key is made from what was read (a key made before the pass
    // would describe the files as they were then).
    let key = match &opts.cache {
        Some(_) => {
            let source = digest::Source { read: Some(&read) };
            Some(Cache::key(plan, epoch, opts.compression, source)?)
        }
        None => None,
    };
    Ok(BuiltLayer {
        info,
        key,
        read: Some(read),
        facts,
        pending,
    })
}

impl BuiltLayer {
    /// Wait for a written layer to reach the disk, move it to its address
    /// and store it in the cache (a cache that can't be written only costs
    /// time next build).
    pub fn commit(&mut self, opts: &BuildOptions, layout: &LayoutWriter) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        layout.commit_pending(pending)?;
        if let (Some(c), Some(k)) = (&opts.cache, &self.key) {
            let _ = c.put(k, &self.info, &layout.blob_path(&self.info.digest));
        }
        Ok(())
    }
}
