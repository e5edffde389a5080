//! Registry push: blobs first (HEAD to skip what the registry has; a
//! cross-repository mount when this push already sent the blob to another
//! repository of the same registry; else POST and a monolithic PUT, or
//! chunked PATCHes for large blobs or when the registry asks), then each
//! platform manifest and the index by digest, tags last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    resolve, retryable_status, with_query, Body, Client, Options, Reference, Reply, Scope, ATTEMPTS,
};
use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::oci::read::Node;
use crate::oci::{self, Descriptor, Index, Layout, Manifest};

/// Blobs up to this size go up in one PUT; larger ones in chunks of it.
pub const CHUNK_SIZE: u64 = 32 << 20;

/// What a push did, per reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    pub reference: String,
    pub digest: Digest,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
}

/// One blob or manifest of the image, in push order.
struct Content {
    descriptor: Descriptor,
    path: PathBuf,
}

/// The image at the top of a layout, as push order: blobs, then platform
/// manifests, then the index (the top itself last).
struct Image {
    blobs: Vec<Content>,
    manifests: Vec<Content>,
    top: Content,
    /// Artifact manifests about the image's manifests (attached SBOMs),
    /// pushed after it; their blobs are in `blobs`.
    referrers: Vec<(Content, Descriptor)>,
    /// The registry images its manifests say they are built on
    /// (`org.opencontainers.image.base.name`): blobs are mounted from them
    /// when the push goes to the same registry.
    bases: Vec<Reference>,
}

fn read_image(layout: &Path) -> Result<Image> {
    let layout = Layout::open(layout)?;
    let fail = |m: &str| {
        Error::msg(format!(
            "read image layout {}: {m}",
            layout.root().display()
        ))
    };
    let tops: Vec<&Descriptor> = layout.tops().collect();
    let top = match tops.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(fail("index.json lists no image")),
        _ => {
            return Err(fail(
                "index.json lists several images; push one layout per image",
            ))
        }
    };
    let content = |d: &Descriptor| Content {
        descriptor: d.clone(),
        path: layout.blob_path(&d.digest),
    };
    let mut blobs: Vec<Content> = Vec::new();
    let mut add_blobs = |m: &Manifest| {
        for b in std::iter::once(&m.config).chain(&m.layers) {
            if !blobs.iter().any(|x| x.descriptor.digest == b.digest) {
                blobs.push(content(b));
            }
        }
    };
    // Children before the index that lists them; the top goes last.
    let mut manifests = Vec::new();
    let mut bases: Vec<Reference> = Vec::new();
    layout.walk(&top, true, &mut |d, node| {
        if let Node::Manifest(m) = node {
            add_blobs(m);
            let base = m.annotations.get(oci::ANNOTATION_BASE_NAME);
            if let Some(r) = base.and_then(|b| b.parse::<Reference>().ok()) {
                if !bases.contains(&r) {
                    bases.push(r);
                }
            }
        }
        if d.digest != top.digest {
            manifests.push(content(d));
        }
        Ok(())
    })?;
    let mut referrers = Vec::new();
    for d in layout.artifacts() {
        let Node::Manifest(m) = layout.node(d)? else {
            return Err(fail(&format!("artifact {} is not a manifest", d.digest)));
        };
        let Some(subject) = m.subject.clone() else {
            continue;
        };
        add_blobs(&m);
        referrers.push((content(d), subject));
    }
    Ok(Image {
        blobs,
        manifests,
        top: content(&top),
        referrers,
        bases,
    })
}

/// Push the image of `layout` to every reference; references to the same
/// repository share one upload, and blobs already sent to another
/// repository of the same registry are mounted rather than sent again.
pub fn push(layout: &Path, refs: &[Reference], opts: &Options) -> Result<Vec<PushReport>> {
    let image = read_image(layout)?;
    let mut by_repo: BTreeMap<(String, String), Vec<&Reference>> = BTreeMap::new();
    for r in refs {
        by_repo
            .entry((r.registry.clone(), r.repository.clone()))
            .or_default()
            .push(r);
    }
    let mut reports = Vec::new();
    // registry → repositories this run already holds every blob in.
    let mut pushed_to: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((registry, repository), group) in by_repo {
        let mut client = Client::new(&registry, &repository, opts, Scope::Push)?;
        // Mount from a repository this run filled, else from the base's
        // repository on this registry (a blob it lacks is uploaded).
        let mount_from = pushed_to
            .get(&registry)
            .and_then(|v| v.first().cloned())
            .or_else(|| {
                image
                    .bases
                    .iter()
                    .find(|b| b.registry == registry && b.repository != repository)
                    .map(|b| b.repository.clone())
            });
        let mut report = PushReport {
            reference: String::new(),
            digest: image.top.descriptor.digest.clone(),
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            blobs_present: 0,
            blobs_mounted: 0,
        };
        for blob in &image.blobs {
            client
                .push_blob(blob, mount_from.as_deref(), &mut report)
                .map_err(|e| e.context(format!("push {registry}/{repository}")))?;
        }
        for m in image.manifests.iter().chain(std::iter::once(&image.top)) {
            client
                .put_manifest(m, m.descriptor.digest.as_str())
                .map_err(|e| e.context(format!("push {registry}/{repository}")))?;
        }
        client
            .push_referrers(&image.referrers)
            .map_err(|e| e.context(format!("push {registry}/{repository}")))?;
        for r in &group {
            if let Some(tag) = &r.tag {
                client
                    .put_manifest(&image.top, tag)
                    .map_err(|e| e.context(format!("push {r}")))?;
            }
            if let Some(d) = &r.digest {
                if d != &image.top.descriptor.digest {
                    return Err(Error::msg(format!(
                        "push {r}: the image's digest is {}, not {d}",
                        image.top.descriptor.digest
                    )));
                }
            }
        }
        pushed_to
            .entry(registry.clone())
            .or_default()
            .push(repository.clone());
        for r in group {
            reports.push(PushReport {
                reference: r.to_string(),
                ..report.clone()
            });
        }
    }
    Ok(reports)
}

impl Client<'_> {
    fn push_blob(
        &mut self,
        blob: &Content,
        mount_from: Option<&str>,
        report: &mut PushReport,
    ) -> Result<()> {
        let d = &blob.descriptor;
        let head = self.request(
            "HEAD",
            &self.url(&format!("blobs/{}", d.digest)),
            &[],
            Body::Empty,
        )?;
        match head.status {
            200 => {
                report.blobs_present += 1;
                return Ok(());
            }
            404 => {}
            s => return Err(self.status_error(&format!("check blob {}", d.digest), s, &head.body)),
        }
        let size = std::fs::metadata(&blob.path)
            .with_path("stat blob", &blob.path)?
            .len();
        if size != d.size {
            return Err(Error::msg(format!(
                "read blob {}: {} bytes on disk, the descriptor says {}",
                blob.path.display(),
                size,
                d.size
            )));
        }
        // A failure in the middle of an upload starts it over (a new
        // session): the registry discards the partial one. If the blob
        // arrived after all (the reply was lost), it is not sent again.
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let head = self.request(
                    "HEAD",
                    &self.url(&format!("blobs/{}", d.digest)),
                    &[],
                    Body::Empty,
                )?;
                if head.status == 200 {
                    report.blobs_uploaded += 1;
                    report.bytes_uploaded += size;
                    return Ok(());
                }
            }
            match self.upload(blob, size, mount_from, report) {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable => last = Some(e.error),
                Err(e) => return Err(e.error),
            }
        }
        Err(last.unwrap_or_else(|| Error::msg("upload failed")))
    }

    fn upload(
        &mut self,
        blob: &Content,
        size: u64,
        mount_from: Option<&str>,
        report: &mut PushReport,
    ) -> std::result::Result<(), Retry> {
        let d = &blob.descriptor;
        let what = format!("upload blob {}", d.digest);
        let mut start = self.url("blobs/uploads/");
        if let Some(from) = mount_from {
            start.push_str(&format!("?mount={}&from={from}", d.digest));
        }
        let r = self
            .request(
                "POST",
                &start,
                &[("Content-Length", "0".into())],
                Body::Empty,
            )
            .map_err(Retry::fatal)?;
        match r.status {
            201 if mount_from.is_some() => {
                report.blobs_mounted += 1;
                return Ok(());
            }
            202 => {}
            s => return Err(self.retry_error(&what, s, &r.body)),
        }
        let mut location = r
            .location
            .as_deref()
            .and_then(|l| resolve(&r.url, l))
            .ok_or_else(|| {
                Retry::fatal(Error::msg(format!(
                    "{what}: the registry gave no usable upload location"
                )))
            })?;
        let base_chunk = if self.opts.chunk_size == 0 {
            CHUNK_SIZE
        } else {
            self.opts.chunk_size
        };
        let chunk = match r.chunk_min {
            Some(min) if min > base_chunk => min,
            _ => base_chunk,
        };
        self.start_bar(&d.digest, size);
        let result = (|| {
            if size > chunk || r.chunk_min.is_some_and(|m| m <= size && size > m) {
                let mut offset = 0;
                while offset < size {
                    let len = chunk.min(size - offset);
                    let range = format!("{}-{}", offset, offset + len - 1);
                    let body = Body::File {
                        path: &blob.path,
                        offset,
                        len,
                    };
                    let headers = [
                        ("Content-Type", "application/octet-stream".to_string()),
                        ("Content-Range", range),
                    ];
                    let r = self
                        .request("PATCH", &location, &headers, body)
                        .map_err(Retry::fatal)?;
                    if r.status != 202 {
                        return Err(self.session_error(&what, r.status, &r.body));
                    }
                    if let Some(l) = &r.location {
                        location = resolve(&r.url, l).ok_or_else(|| {
                            Retry::fatal(Error::msg(format!(
                                "{what}: the registry gave an unusable upload location"
                            )))
                        })?;
                    }
                    offset += len;
                }
                let url = with_query(&location, "digest", d.digest.as_str());
                let r = self
                    .request("PUT", &url, &[("Content-Length", "0".into())], Body::Empty)
                    .map_err(Retry::fatal)?;
                self.finish_upload(&what, &r, &d.digest)
            } else {
                let url = with_query(&location, "digest", d.digest.as_str());
                let headers = [("Content-Type", "application/octet-stream".to_string())];
                let body = Body::File {
                    path: &blob.path,
                    offset: 0,
                    len: size,
                };
                let r = self
                    .request("PUT", &url, &headers, body)
                    .map_err(Retry::fatal)?;
                self.finish_upload(&what, &r, &d.digest)
            }
        })();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        result?;
        report.blobs_uploaded += 1;
        report.bytes_uploaded += size;
        Ok(())
    }

    fn finish_upload(
        &self,
        what: &str,
        r: &Reply,
        digest: &Digest,
    ) -> std::result::Result<(), Retry> {
        if r.status != 201 {
            return Err(self.session_error(what, r.status, &r.body));
        }
        match &r.digest {
            Some(got) if got != digest.as_str() => Err(Retry::fatal(Error::msg(format!(
                "{what}: the registry stored it as {got}"
            )))),
            _ => Ok(()),
        }
    }

    /// Push artifact manifests by digest. A registry that keeps referrers
    /// itself answers with `OCI-Subject`; for others, the referrers tag
    /// schema: a tag `sha256-<subject hex>` naming an index of them.
    fn push_referrers(&mut self, referrers: &[(Content, Descriptor)]) -> Result<()> {
        let mut fallback: BTreeMap<Digest, Vec<Descriptor>> = BTreeMap::new();
        for (artifact, subject) in referrers {
            let handled = self.put_manifest_reply(artifact, artifact.descriptor.digest.as_str())?;
            if !handled {
                fallback
                    .entry(subject.digest.clone())
                    .or_default()
                    .push(artifact.descriptor.clone());
            }
        }
        for (subject, list) in fallback {
            let index = Index {
                schema_version: 2,
                media_type: Some(oci::MEDIA_TYPE_INDEX.into()),
                manifests: list,
                annotations: BTreeMap::new(),
            };
            let tag = format!("sha256-{}", subject.hex());
            self.put_manifest_bytes(oci::MEDIA_TYPE_INDEX, &oci::canonical_json(&index), &tag)?;
        }
        Ok(())
    }

    /// PUT a manifest and check the digest the registry computed; true
    /// when the registry says it tracks the manifest's subject (referrers).
    fn put_manifest_reply(&mut self, m: &Content, reference: &str) -> Result<bool> {
        let bytes = std::fs::read(&m.path).with_path("read", &m.path)?;
        let r = self.put_manifest_bytes(&m.descriptor.media_type, &bytes, reference)?;
        match &r.digest {
            Some(got) if got != m.descriptor.digest.as_str() => Err(Error::msg(format!(
                "put manifest {reference}: the registry computed {got}, not {}",
                m.descriptor.digest
            ))),
            _ => Ok(r.oci_subject),
        }
    }

    /// PUT manifest bytes under `reference`, Content-Type = `media_type`;
    /// anything but 201 is an error.
    fn put_manifest_bytes(
        &mut self,
        media_type: &str,
        bytes: &[u8],
        reference: &str,
    ) -> Result<Reply> {
        let headers = [("Content-Type", media_type.to_string())];
        let url = self.url(&format!("manifests/{reference}"));
        let r = self.request("PUT", &url, &headers, Body::Bytes(bytes))?;
        if r.status != 201 {
            return Err(self.status_error(&format!("put manifest {reference}"), r.status, &r.body));
        }
        Ok(r)
    }

    fn put_manifest(&mut self, m: &Content, reference: &str) -> Result<()> {
        self.put_manifest_reply(m, reference).map(|_| ())
    }

    /// One request with retries (connection errors, 408, 429, 5xx) and
    /// authentication (a 401 answered once with credentials or a token; a
    /// token refused later is renewed once).
    fn session_error(&self, what: &str, status: u16, body: &str) -> Retry {
        Retry {
            retryable: retryable_status(status) || status == 404 || status == 416,
            error: self.status_error(what, status, body),
        }
    }

    fn retry_error(&self, what: &str, status: u16, body: &str) -> Retry {
        Retry {
            retryable: retryable_status(status),
            error: self.status_error(what, status, body),
        }
    }
}

/// An upload step's failure, and whether starting over may help.
struct Retry {
    retryable: bool,
    error: Error,
}

impl Retry {
    fn fatal(error: Error) -> Retry {
        Retry {
            retryable: false,
            error,
        }
    }
}
