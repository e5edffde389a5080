//! Registry pull: the top manifest or index by tag or digest, the manifest
//! of each wanted platform, then its config and layers, into a
//! content-addressed store (`blobs/sha256/<hex>`, the shape of an image
//! layout's blobs). The registry is a hostile peer: manifests and configs
//! are capped at [`MAX_MANIFEST_SIZE`], and every byte is hashed and checked
//! against the digest that names it before it gets its address. What the
//! store already holds is not fetched again, so a reference pinned by digest
//! whose content is all there needs no network.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{backoff, Body, Client, Counting, Options, Reference, Scope, ATTEMPTS};
use crate::digest::Digest;
use crate::error::{one_line, Error, IoResultExt, Result};
use crate::oci::{self, Descriptor, ImageConfigJson, Index, Manifest, OciPlatform};
use crate::platform::Platform;

/// The largest manifest, index or image config accepted (containerd's and
/// go-containerregistry's limit too).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types a pull accepts for a manifest, in order of preference.
pub const ACCEPTED: [&str; 4] = [
    oci::MEDIA_TYPE_INDEX,
    oci::MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
];

/// A manifest or an index, as a registry serves it.
#[derive(Clone, Debug)]
pub enum Fetched {
    Index(Index),
    Manifest(Box<Manifest>),
}

/// Parse the bytes a registry served as `media_type` (its Content-Type;
/// parameters are ignored): an OCI index or Docker manifest list, or an OCI
/// or Docker schema2 image manifest. Refused: more than
/// [`MAX_MANIFEST_SIZE`] bytes, any other media type, a `mediaType` field
/// that disagrees with the one served, a schemaVersion other than 2.
pub fn parse_manifest(media_type: &str, bytes: &[u8]) -> Result<Fetched> {
    let what = "read manifest";
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(too_big(what, bytes.len() as u64));
    }
    let media_type = essence(media_type);
    let is_index = match media_type.as_str() {
        oci::MEDIA_TYPE_INDEX | MEDIA_TYPE_DOCKER_LIST => true,
        oci::MEDIA_TYPE_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => false,
        other => {
            return Err(Error::msg(format!(
                "{what}: unexpected media type {:?}",
                one_line(other)
            )))
        }
    };
    let json = |e: serde_json::Error| Error::msg(format!("{what}: {media_type}: {e}"));
    let head: Head = serde_json::from_slice(bytes).map_err(json)?;
    if let Some(declared) = head.media_type.as_deref() {
        if declared != media_type {
            return Err(Error::msg(format!(
                "{what}: served as {media_type}, but its mediaType is {:?}",
                one_line(declared)
            )));
        }
    }
    if head.schema_version != Some(2) {
        return Err(Error::msg(format!(
            "{what}: {media_type}: schemaVersion must be 2"
        )));
    }
    if is_index {
        serde_json::from_slice(bytes)
            .map(Fetched::Index)
            .map_err(json)
    } else {
        serde_json::from_slice(bytes)
            .map(Fetched::Manifest)
            .map_err(json)
    }
}

/// What every manifest and index says about itself.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
}

/// The media type of manifest bytes without a Content-Type (from the
/// store): their `mediaType`, else an index if they list manifests, else an
/// OCI manifest.
fn sniff(bytes: &[u8]) -> Result<String> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<IgnoredAny>,
    }
    let s: Shape =
        serde_json::from_slice(bytes).map_err(|e| Error::msg(format!("read manifest: {e}")))?;
    Ok(match (s.media_type, s.manifests) {
        (Some(m), _) => m,
        (None, Some(_)) => oci::MEDIA_TYPE_INDEX.into(),
        (None, None) => oci::MEDIA_TYPE_MANIFEST.into(),
    })
}

/// A media type without its parameters, lowercase.
fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn too_big(what: &str, size: u64) -> Error {
    Error::msg(format!(
        "{what}: {size} bytes is over the {} MiB limit",
        MAX_MANIFEST_SIZE >> 20
    ))
}

/// A platform as containerd compares them: arm64 is v8 and arm is v7 when
/// no variant says otherwise.
fn normal<'a>(os: &'a str, arch: &'a str, variant: Option<&'a str>) -> (&'a str, &'a str, &'a str) {
    let variant = match (arch, variant) {
        ("arm64", None) => "v8",
        ("arm", None) => "v7",
        (_, v) => v.unwrap_or(""),
    };
    (os, arch, variant)
}

/// Whether an image of `os/arch[/variant]` runs as `want`.
pub fn platform_matches(want: &Platform, os: &str, arch: &str, variant: Option<&str>) -> bool {
    normal(&want.os, &want.architecture, want.variant.as_deref()) == normal(os, arch, variant)
}

/// The manifests of `index` for `platforms` (every one it lists when
/// `platforms` is empty), each once, in the order asked. A platform the
/// index has no manifest for is an error naming it.
pub fn choose<'a>(index: &'a Index, platforms: &[Platform]) -> Result<Vec<&'a Descriptor>> {
    if platforms.is_empty() {
        return Ok(index.manifests.iter().collect());
    }
    let mut chosen: Vec<&Descriptor> = Vec::new();
    for want in platforms {
        let found = index.manifests.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                platform_matches(want, &p.os, &p.architecture, p.variant.as_deref())
            })
        });
        let Some(d) = found else {
            let listed: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(OciPlatform::display))
                .collect();
            return Err(Error::msg(format!(
                "the index has no manifest for {want} (it lists {})",
                if listed.is_empty() {
                    "no platforms".to_string()
                } else {
                    one_line(&listed.join(", "))
                }
            )));
        };
        if !chosen.iter().any(|c| c.digest == d.digest) {
            chosen.push(d);
        }
    }
    Ok(chosen)
}

/// Fetch `reference` into the content-addressed store `store` (a directory
/// holding blobs/sha256/<hex>, the same shape as an OCI layout's blobs):
/// the top manifest or index, and for each wanted platform its manifest,
/// config and layers. Returns the top's descriptor (media type as served,
/// digest, size). Empty `platforms` = every platform of an index.
pub fn pull(
    reference: &Reference,
    platforms: &[Platform],
    store: &Path,
    opts: &Options,
) -> Result<Descriptor> {
    let mut puller = Puller {
        reference,
        store: Store::open(store)?,
        opts,
        client: None,
    };
    puller
        .pull(platforms)
        .map_err(|e| e.context(format!("pull {reference}")))
}

struct Puller<'o> {
    reference: &'o Reference,
    store: Store,
    opts: &'o Options,
    /// Made at the first request: a pull the store satisfies needs none.
    client: Option<Client<'o>>,
}

impl<'o> Puller<'o> {
    fn pull(&mut self, platforms: &[Platform]) -> Result<Descriptor> {
        let (top, bytes, fetched) = self.top()?;
        match &fetched {
            Fetched::Index(index) => {
                for d in choose(index, platforms)? {
                    let m = self.child(d)?;
                    self.image(&m, &[])?;
                }
            }
            Fetched::Manifest(m) => self.image(m, platforms)?,
        }
        // The top goes in last, as a layout's index.json does.
        self.store.put(&top.digest, &bytes)?;
        Ok(top)
    }

    fn client(&mut self) -> Result<&mut Client<'o>> {
        Ok(match &mut self.client {
            Some(c) => c,
            slot => slot.insert(Client::new(
                &self.reference.registry,
                &self.reference.repository,
                self.opts,
                Scope::Pull,
            )?),
        })
    }

    /// The top manifest or index: from the store when the reference pins
    /// its digest and the store has it, else from the registry.
    fn top(&mut self) -> Result<(Descriptor, Vec<u8>, Fetched)> {
        let r = self.reference;
        if let Some(d) = &r.digest {
            if let Some(bytes) = self.store.read_small(d)? {
                let media_type = sniff(&bytes)?;
                let fetched = parse_manifest(&media_type, &bytes)?;
                let top = Descriptor::of(&media_type, d.clone(), bytes.len() as u64);
                return Ok((top, bytes, fetched));
            }
        }
        let name = match (&r.digest, &r.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => return Err(Error::msg("the reference names no tag or digest")),
        };
        let (media_type, bytes, digest) = self.get_manifest(&name, r.digest.as_ref())?;
        let fetched = parse_manifest(&media_type, &bytes)?;
        let top = Descriptor::of(&media_type, digest, bytes.len() as u64);
        Ok((top, bytes, fetched))
    }

    /// A platform's manifest, named by the index.
    fn child(&mut self, d: &Descriptor) -> Result<Manifest> {
        let what = format!("get manifest {}", d.digest);
        if d.size > MAX_MANIFEST_SIZE {
            return Err(too_big(&what, d.size));
        }
        let (media_type, bytes) = match self.store.read_small(&d.digest)? {
            Some(bytes) => (d.media_type.clone(), bytes),
            None => {
                let (media_type, bytes, _) =
                    self.get_manifest(d.digest.as_str(), Some(&d.digest))?;
                (media_type, bytes)
            }
        };
        let m = match parse_manifest(&media_type, &bytes).map_err(|e| e.context(&what))? {
            Fetched::Manifest(m) => *m,
            Fetched::Index(_) => {
                return Err(Error::msg(format!(
                    "{what}: an index inside an index is not supported"
                )))
            }
        };
        self.store.put(&d.digest, &bytes)?;
        Ok(m)
    }

    /// GET a manifest by tag or digest: capped, and its bytes must hash to
    /// `expect` and to the registry's Docker-Content-Digest, when given.
    /// Returns the media type served, the bytes and their digest.
    fn get_manifest(
        &mut self,
        name: &str,
        expect: Option<&Digest>,
    ) -> Result<(String, Vec<u8>, Digest)> {
        let what = format!("get manifest {name}");
        let client = self.client()?;
        let url = client.url(&format!("manifests/{name}"));
        let accept = ("Accept", ACCEPTED.join(", "));
        let (reply, mut response) = client.open("GET", &url, &[accept], Body::Empty)?;
        if reply.status != 200 {
            let body = super::short_body("GET", &mut response);
            return Err(client.status_error(&what, reply.status, &body));
        }
        if let Some(n) = reply.content_length.filter(|&n| n > MAX_MANIFEST_SIZE) {
            return Err(too_big(&what, n));
        }
        let bytes = read_capped(response.body_mut().as_reader(), MAX_MANIFEST_SIZE)
            .map_err(|e| Error::msg(format!("{what}: {}", crate::error::io_message(&e))))?
            .ok_or_else(|| too_big(&what, MAX_MANIFEST_SIZE + 1))?;
        let digest = Digest::of(&bytes);
        if let Some(want) = expect.filter(|&w| w != &digest) {
            return Err(Error::msg(format!(
                "{what}: the registry's bytes hash to {digest}, not {want}"
            )));
        }
        if let Some(said) = reply.digest.as_deref().filter(|&s| s != digest.as_str()) {
            return Err(Error::msg(format!(
                "{what}: the registry says {}, its bytes hash to {digest}",
                one_line(said)
            )));
        }
        let media_type = match reply.content_type.as_deref() {
            Some(t) => essence(t),
            None => sniff(&bytes)?,
        };
        Ok((media_type, bytes, digest))
    }

    /// An image manifest's config and layers; with `platforms`, its config
    /// must be each of them.
    fn image(&mut self, m: &Manifest, platforms: &[Platform]) -> Result<()> {
        self.blob(&m.config, Some(MAX_MANIFEST_SIZE))?;
        if !platforms.is_empty() {
            let path = self.store.path(&m.config.digest);
            let bytes = fs::read(&path).with_path("read", &path)?;
            let c: ImageConfigJson = serde_json::from_slice(&bytes)
                .map_err(|e| Error::msg(format!("read image config {}: {e}", m.config.digest)))?;
            for want in platforms {
                if !platform_matches(want, &c.os, &c.architecture, c.variant.as_deref()) {
                    let is = OciPlatform {
                        os: c.os.clone(),
                        architecture: c.architecture.clone(),
                        variant: c.variant.clone(),
                    };
                    return Err(Error::msg(format!(
                        "the image is for {}, not {want}",
                        one_line(&is.display())
                    )));
                }
            }
        }
        for layer in &m.layers {
            self.blob(layer, None)?;
        }
        Ok(())
    }

    /// A blob by digest into the store, unless it is there; at most `cap`
    /// bytes. A transfer broken off is tried again.
    fn blob(&mut self, d: &Descriptor, cap: Option<u64>) -> Result<()> {
        if self.store.has(d) {
            return Ok(());
        }
        let what = format!("fetch blob {}", d.digest);
        if let Some(cap) = cap.filter(|&c| d.size > c) {
            return Err(Error::msg(format!(
                "{what}: its {} bytes are over the {} MiB limit",
                d.size,
                cap >> 20
            )));
        }
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.try_blob(d, &what)? {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                backoff(attempt);
            }
        }
        Err(Error::msg(format!(
            "{what}: {last} (after {ATTEMPTS} attempts)"
        )))
    }

    /// One GET of a blob, streamed into a temporary file in the store while
    /// hashed, renamed to its address only when its size and digest are the
    /// descriptor's. The inner error is a read broken off (worth another
    /// try); the outer one is final.
    fn try_blob(&mut self, d: &Descriptor, what: &str) -> Result<std::result::Result<(), String>> {
        let mut temp = self.store.temp()?;
        let client = self.client()?;
        let url = client.url(&format!("blobs/{}", d.digest));
        let (reply, mut response) = client.open("GET", &url, &[], Body::Empty)?;
        if reply.status != 200 {
            let body = super::short_body("GET", &mut response);
            return Err(client.status_error(what, reply.status, &body));
        }
        if let Some(n) = reply.content_length.filter(|&n| n != d.size) {
            return Err(Error::msg(format!(
                "{what}: the registry sends {n} bytes, the manifest says {}",
                d.size
            )));
        }
        client.start_bar(&d.digest, d.size);
        let reader = Counting {
            // One byte more than the descriptor says shows a longer blob.
            inner: response.body_mut().as_reader().take(d.size + 1),
            bar: client.bar.clone(),
        };
        let copied = copy_hashed(reader, temp.as_file_mut());
        if let Some(bar) = client.bar.take() {
            bar.finish_and_clear();
        }
        let (size, digest) = match copied {
            Ok(done) => done,
            Err(CopyError::Read(e)) => return Ok(Err(crate::error::io_message(&e))),
            Err(CopyError::Write(e)) => return Err(Error::io("write", temp.path(), e)),
        };
        if size != d.size || digest != d.digest {
            // `temp` is removed as it is dropped: nothing is left behind.
            return Err(Error::msg(format!(
                "{what}: the registry sent {}{size} bytes hashing to {digest}, not the {} \
                 bytes the digest names",
                if size > d.size { "over " } else { "" },
                d.size
            )));
        }
        self.store.commit(temp, &d.digest)?;
        Ok(Ok(()))
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copy `r` to `w`, hashing; the byte count and sha256.
fn copy_hashed(mut r: impl Read, w: &mut File) -> std::result::Result<(u64, Digest), CopyError> {
    let mut hash = Sha256::new();
    let mut buf = vec![0; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hash.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
    Ok((total, Digest::from_sha256(hash.finalize().as_slice())))
}

/// All of `r` if it is at most `cap` bytes; None if it is longer (reading
/// stops one byte past the cap).
fn read_capped(r: impl Read, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    r.take(cap + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= cap).then_some(bytes))
}

/// The content-addressed store: `blobs/sha256/<hex>` under its root, each
/// file checked before it was renamed there.
struct Store {
    blobs: PathBuf,
}

impl Store {
    fn open(root: &Path) -> Result<Store> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).with_path("create directory", &blobs)?;
        Ok(Store { blobs })
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// Whether the store has the blob, at the descriptor's size (its digest
    /// was checked on the way in).
    fn has(&self, d: &Descriptor) -> bool {
        fs::metadata(self.path(&d.digest)).is_ok_and(|m| m.is_file() && m.len() == d.size)
    }

    /// A manifest the store holds, if its bytes (capped) still hash to `d`.
    fn read_small(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(d);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let bytes = read_capped(f, MAX_MANIFEST_SIZE).with_path("read", &path)?;
        Ok(bytes.filter(|b| &Digest::of(b) == d))
    }

    /// A temporary file beside the blobs; removed unless committed.
    fn temp(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.blobs.parent().unwrap_or(&self.blobs);
        tempfile::Builder::new()
            .prefix(".pull-")
            .tempfile_in(dir)
            .with_path("create a temporary file in", dir)
    }

    /// Sync `temp` and rename it to `d`'s address.
    fn commit(&self, temp: tempfile::NamedTempFile, d: &Digest) -> Result<()> {
        temp.as_file().sync_all().with_path("sync", temp.path())?;
        // Readable by all, as blobs a build links into its layout are.
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_path("set the mode of", temp.path())?;
        let dest = self.path(d);
        temp.persist(&dest)
            .map_err(|e| Error::io("rename blob into", &dest, e.error))?;
        Ok(())
    }

    /// Store manifest bytes already checked against `d`, unless the store
    /// holds them (intact) already.
    fn put(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        if self.read_small(d)?.is_some() {
            return Ok(());
        }
        let mut temp = self.temp()?;
        temp.write_all(bytes).with_path("write", temp.path())?;
        self.commit(temp, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2}"#;

    fn manifest(media_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{CONFIG},"layers":[],"unknown":1}}"#
        )
    }

    fn index(platforms: &[&str]) -> Index {
        let entries: Vec<String> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let parts: Vec<&str> = p.split('/').collect();
                let variant = parts
                    .get(2)
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{}","digest":"sha256:{i:064}","size":1,"platform":{{"os":"{}","architecture":"{}"{variant}}}}}"#,
                    oci::MEDIA_TYPE_MANIFEST, parts[0], parts[1]
                )
            })
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            entries.join(",")
        );
        match parse_manifest(oci::MEDIA_TYPE_INDEX, json.as_bytes()).unwrap() {
            Fetched::Index(i) => i,
            Fetched::Manifest(_) => panic!("an index parsed as a manifest"),
        }
    }

    #[test]
    fn manifests_parse_by_media_type_and_refuse_the_rest() {
        let m = manifest(MEDIA_TYPE_DOCKER_MANIFEST);
        let served = format!("{MEDIA_TYPE_DOCKER_MANIFEST}; charset=utf-8");
        assert!(matches!(
            parse_manifest(&served, m.as_bytes()).unwrap(),
            Fetched::Manifest(_)
        ));
        let list = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_manifest(MEDIA_TYPE_DOCKER_LIST, list.as_bytes()).unwrap(),
            Fetched::Index(_)
        ));
        let err = |t: &str, b: &[u8]| parse_manifest(t, b).unwrap_err().to_string();
        let schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        assert_eq!(
            err(schema1, b"{}"),
            format!("read manifest: unexpected media type {schema1:?}")
        );
        // Served as one thing, saying it is another.
        assert!(err(oci::MEDIA_TYPE_INDEX, m.as_bytes()).contains("but its mediaType is"));
        let v1 = m.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert!(err(MEDIA_TYPE_DOCKER_MANIFEST, v1.as_bytes()).contains("schemaVersion"));
        let big = vec![b' '; MAX_MANIFEST_SIZE as usize + 1];
        assert!(err(oci::MEDIA_TYPE_MANIFEST, &big).contains("over the 4 MiB limit"));
        assert!(
            err(oci::MEDIA_TYPE_MANIFEST, b"{\"schemaVersion\":2").starts_with("read manifest: ")
        );
    }

    #[test]
    fn stored_manifests_are_sniffed() {
        assert_eq!(
            sniff(manifest(MEDIA_TYPE_DOCKER_MANIFEST).as_bytes()).unwrap(),
            MEDIA_TYPE_DOCKER_MANIFEST
        );
        assert_eq!(
            sniff(br#"{"manifests":[]}"#).unwrap(),
            oci::MEDIA_TYPE_INDEX
        );
        assert_eq!(
            sniff(br#"{"config":{}}"#).unwrap(),
            oci::MEDIA_TYPE_MANIFEST
        );
    }

    #[test]
    fn platforms_match_as_containerd_normalizes_them() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert!(platform_matches(&p("linux/arm64"), "linux", "arm64", None));
        assert!(platform_matches(
            &p("linux/arm64"),
            "linux",
            "arm64",
            Some("v8")
        ));
        assert!(platform_matches(&p("linux/arm"), "linux", "arm", None));
        assert!(!platform_matches(&p("linux/arm/v6"), "linux", "arm", None));
        assert!(!platform_matches(&p("linux/amd64"), "linux", "arm64", None));
        assert!(!platform_matches(
            &p("linux/amd64"),
            "windows",
            "amd64",
            None
        ));
        // A Platform built by hand, without the parser's normal form.
        let bare = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        };
        assert!(platform_matches(&bare, "linux", "arm64", Some("v8")));

        let i = index(&["linux/amd64", "linux/arm64/v8", "linux/arm"]);
        let chosen = choose(&i, &[p("linux/arm/v7"), p("linux/arm64"), p("linux/arm")]).unwrap();
        let digests: Vec<&Digest> = chosen.iter().map(|d| &d.digest).collect();
        assert_eq!(digests, [&i.manifests[2].digest, &i.manifests[1].digest]);
        assert_eq!(choose(&i, &[]).unwrap().len(), 3);
        assert_eq!(
            choose(&i, &[p("linux/s390x")]).unwrap_err().to_string(),
            "the index has no manifest for linux/s390x (it lists linux/amd64, linux/arm64/v8, linux/arm)"
        );
    }

    #[test]
    fn reads_are_capped() {
        assert_eq!(
            read_capped(&b"abcd"[..], 4).unwrap().as_deref(),
            Some(&b"abcd"[..])
        );
        assert_eq!(read_capped(&b"abcde"[..], 4).unwrap(), None);
    }

    #[test]
    fn a_blob_that_does_not_match_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut temp = store.temp().unwrap();
        let (n, d) =
            copy_hashed(&b"hello"[..], temp.as_file_mut()).unwrap_or_else(|_| panic!("copy"));
        assert_eq!((n, &d), (5, &Digest::of(b"hello")));
        drop(temp);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            1,
            "only sha256/"
        );
        store.put(&d, b"hello").unwrap();
        assert_eq!(
            store.read_small(&d).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert!(store.has(&Descriptor::of("x", d.clone(), 5)));
        assert!(!store.has(&Descriptor::of("x", d.clone(), 6)));
        // Bytes changed in the store are not trusted.
        fs::write(store.path(&d), b"jello").unwrap();
        assert_eq!(store.read_small(&d).unwrap(), None);
    }
}
