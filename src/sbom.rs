//! What an image is made of, for scanners and auditors.
//!
//! It describes and adds nothing: the package metadata files scanners read
//! are put into the image by the plan ([`crate::plan::packages`]).
//!
//! - [`spdx`]: an SPDX 2.3 JSON document for one platform's image: every
//!   regular file with its SHA-1 and SHA-256, the Debian packages, and the
//!   Go modules recorded in Go programs. Deterministic: the same plan, epoch
//!   and digest give the same bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::dpkg::{DpkgDb, Package};
use crate::error::{Error, IoResultExt, Result};
use crate::gobuildinfo::{self, BuildInfo};
use crate::plan::packages::{owners, Owned};
use crate::plan::{ItemKind, Plan};
use crate::platform::Platform;
use crate::recipe::ImagePath;
use crate::timefmt::rfc3339;

/// The SPDX identifier of the image's own package.
pub const IMAGE_SPDX_ID: &str = "SPDXRef-Image";
const NOASSERTION: &str = "NOASSERTION";

/// What [`spdx`] reads that the plan does not hold, as one digest: each
/// database's root and distribution, and the licenses of the packages
/// that own image files (read from their copyright files).
pub fn outside_facts(plan: &Plan, dbs: &[DpkgDb]) -> String {
    let mut text = String::new();
    for db in dbs {
        let distro = db
            .distro()
            .map(|d| format!("{}/{:?}", d.id, d.version_id))
            .unwrap_or_default();
        text.push_str(&format!("db {} {distro}\n", db.root().display()));
    }
    for o in owners(plan, dbs).values() {
        let (license, names) = o.db.licenses(o.pkg);
        text.push_str(&format!(
            "pkg {} {:?} {names:?}\n",
            o.pkg.qualified_name(),
            license
        ));
    }
    crate::digest::Digest::of(text.as_bytes()).to_string()
}

/// What [`spdx`] learns from the input files and the package database
/// besides the digests: the packages' licenses ([`outside_facts`]) and each
/// ELF input's Go build information. Independent of the layer, so a build
/// gathers it while the layer is written.
#[derive(Debug, Default)]
pub struct Prepared {
    /// [`outside_facts`] of the plan.
    pub outside: String,
    /// Input file (host path) → its Go build information, for the ELF
    /// files that have one.
    go: HashMap<PathBuf, BuildInfo>,
}

/// Gather [`Prepared`] for `plan`: the copyright files of its packages
/// are read, and the head of every input file (whole, mapped, when ELF).
pub fn prepare(plan: &Plan, dbs: &[DpkgDb]) -> Result<Prepared> {
    use rayon::prelude::*;
    let outside = outside_facts(plan, dbs);
    // A file a probe saw is not ELF is not opened again.
    let inputs: Vec<&Path> = plan
        .entries
        .values()
        .filter_map(|i| match &i.kind {
            ItemKind::File { src, .. } if !i.not_elf => Some(src.as_path()),
            _ => None,
        })
        .collect();
    let found: Vec<Option<BuildInfo>> = inputs
        .par_iter()
        .map(|src| go_facts(src))
        .collect::<Result<_>>()?;
    let go = inputs
        .into_iter()
        .zip(found)
        .filter_map(|(src, go)| Some((src.to_path_buf(), go?)))
        .collect();
    Ok(Prepared { outside, go })
}

/// Everything [`spdx`] describes.
#[derive(Clone, Copy, Debug)]
pub struct SbomInput<'a> {
    /// The recipe's image name.
    pub name: &'a str,
    pub tag: &'a str,
    pub platform: &'a Platform,
    /// Seconds since 1970, the document's creation time.
    pub epoch: u64,
    /// The platform image's manifest digest ("sha256:…").
    pub manifest_digest: &'a str,
    pub plan: &'a Plan,
    pub dbs: &'a [DpkgDb],
    /// Where the files' digests come from (as the layer pass read them).
    pub digests: crate::digest::Source<'a>,
    /// The facts [`prepare`] gathered for this plan; None: gather them now.
    pub prepared: Option<&'a Prepared>,
    /// The image this one is built on: its name and manifest digest.
    pub base: Option<(&'a str, &'a crate::digest::Digest)>,
}

/// One regular file of the image. Kept small (no string of its own: the
/// digests as bytes, the SPDX id in [`FileIds`]) because there is one for
/// every file and all are held until the document is written.
struct FileFacts<'a> {
    path: &'a ImagePath,
    sha1: [u8; 20],
    sha256: [u8; 32],
    go: Option<Box<BuildInfo>>,
}

/// The files' SPDX ids, one after another in one string (the `n`th ends at
/// `ends[n]`): one allocation for all of them, borrowed by the
/// relationships that name a file.
struct FileIds {
    text: String,
    ends: Vec<usize>,
}

impl FileIds {
    fn of(files: &[FileFacts]) -> FileIds {
        let mut ids = FileIds {
            text: String::new(),
            ends: Vec::with_capacity(files.len()),
        };
        for f in files {
            spdx_id_into(&mut ids.text, "File", f.path.rel(), &[f.path.as_str()]);
            ids.ends.push(ids.text.len());
        }
        ids
    }

    fn get(&self, n: usize) -> &str {
        let start = if n == 0 { 0 } else { self.ends[n - 1] };
        &self.text[start..self.ends[n]]
    }
}

/// A Go module (or the standard library) found in Go programs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GoPackage {
    name: String,
    version: Option<String>,
    purl: String,
    cpe: Option<String>,
}

/// An SPDX 2.3 JSON document describing one platform's image.
pub fn spdx(input: &SbomInput) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_spdx(input, &mut out)?;
    Ok(out)
}

/// [`spdx`], written to `out` as it is made: the document is never held
/// whole.
pub fn write_spdx(input: &SbomInput, out: &mut impl std::io::Write) -> Result<()> {
    let digest_hex = manifest_hex(input)?;
    let files = file_facts(input)?;
    let ids = FileIds::of(&files);
    let mut doc = SpdxDoc::new(*input, files, &ids);
    doc.add_image(digest_hex);
    doc.add_debian_packages();
    doc.add_go_modules();
    doc.write_json(out).map_err(|e| {
        Error::msg(format!(
            "write spdx sbom for {} on {}: {e}",
            input.name, input.platform
        ))
    })
}

/// The hex part of the image's manifest digest, which must be a sha256 one.
fn manifest_hex<'a>(input: &SbomInput<'a>) -> Result<&'a str> {
    let fail = |m: String| {
        Error::msg(format!(
            "generate spdx sbom for {} on {}: {m}",
            input.name, input.platform
        ))
    };
    input
        .manifest_digest
        .strip_prefix("sha256:")
        .filter(|_| crate::digest::Digest::parse(input.manifest_digest).is_ok())
        .ok_or_else(|| {
            fail(format!(
                "{:?} is not a sha256 digest",
                input.manifest_digest
            ))
        })
}

/// Every regular file of the image, in plan order, with its digests and Go
/// build information (gathered in parallel).
fn file_facts<'a>(input: &SbomInput<'a>) -> Result<Vec<FileFacts<'a>>> {
    use rayon::prelude::*;
    let plan: &'a Plan = input.plan;
    let regular: Vec<(&ImagePath, &ItemKind)> = plan
        .entries
        .iter()
        // Whiteouts are not files of the image: they delete the base's.
        .filter(|(path, item)| {
            matches!(item.kind, ItemKind::File { .. } | ItemKind::Data { .. })
                && !path.is_whiteout()
        })
        .map(|(path, item)| (path, &item.kind))
        .collect();
    regular
        .par_iter()
        .map(|&(path, kind)| match kind {
            ItemKind::File { src, .. } => {
                let go = match input.prepared {
                    Some(p) => p.go.get(src).cloned(),
                    None => go_facts(src)?,
                };
                let d = input.digests.get(src)?;
                Ok(FileFacts {
                    path,
                    sha1: d.sha1,
                    sha256: d.sha256,
                    go: go.map(Box::new),
                })
            }
            ItemKind::Data { bytes } => Ok(FileFacts {
                path,
                sha1: Sha1::digest(bytes).into(),
                sha256: Sha256::digest(bytes).into(),
                go: gobuildinfo::parse(bytes).map(Box::new),
            }),
            _ => unreachable!("filtered to regular files"),
        })
        .collect()
}

/// An SPDX relationship: (element, type, related element); a file's id is
/// borrowed from [`FileIds`].
type Relationship<'i> = (Cow<'i, str>, &'static str, Cow<'i, str>);

/// The SPDX document of [`spdx`], built step by step: the image's package,
/// its Debian packages, its Go modules, then the document around them.
struct SpdxDoc<'a> {
    input: SbomInput<'a>,
    files: Vec<FileFacts<'a>>,
    ids: &'a FileIds,
    /// In the order added; sorted by SPDXID when the document is written.
    packages: Vec<Value>,
    relationships: Vec<Relationship<'a>>,
    /// LicenseRef id → the license name Debian uses for it.
    license_refs: BTreeMap<String, String>,
}

impl<'a> SpdxDoc<'a> {
    /// The document describes the image, which contains every file.
    fn new(input: SbomInput<'a>, files: Vec<FileFacts<'a>>, ids: &'a FileIds) -> SpdxDoc<'a> {
        let mut relationships = Vec::with_capacity(files.len() * 2 + 1);
        relationships.push(("SPDXRef-DOCUMENT".into(), "DESCRIBES", IMAGE_SPDX_ID.into()));
        for n in 0..files.len() {
            relationships.push((IMAGE_SPDX_ID.into(), "CONTAINS", ids.get(n).into()));
        }
        SpdxDoc {
            input,
            files,
            ids,
            packages: Vec::new(),
            relationships,
            license_refs: BTreeMap::new(),
        }
    }

    /// The image's own package: its manifest digest, and a verification
    /// code over every file.
    fn add_image(&mut self, digest_hex: &str) {
        let input = &self.input;
        let image_purl = format!(
            "pkg:oci/{}@{}?arch={}&tag={}",
            purl_encode(input.name.rsplit('/').next().unwrap_or(input.name)),
            purl_encode(input.manifest_digest),
            purl_encode(&input.platform.architecture),
            purl_encode(input.tag)
        );
        self.packages.push(json!({
            "SPDXID": IMAGE_SPDX_ID,
            "name": input.name,
            "versionInfo": input.tag,
            "supplier": NOASSERTION,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": true,
            "packageVerificationCode": {
                "packageVerificationCodeValue": verification_code(self.files.iter().map(|f| &f.sha1)),
            },
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest_hex}],
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [purl_ref(&image_purl)],
            "comment": format!("{} image for {}", input.name, input.platform),
        }));
        if let Some((name, digest)) = input.base {
            self.add_base(name, digest);
        }
    }

    /// The base image, as a package the image descends from (its files
    /// are the base's and are not listed; a scanner reads the base's own
    /// package database in the image).
    fn add_base(&mut self, name: &str, digest: &crate::digest::Digest) {
        let id = "SPDXRef-Base".to_string();
        // A registry reference: pkg:oci/NAME@DIGEST?repository_url=HOST/PATH.
        let local = ["rootfs:", "oci:", "oci-archive:", "docker-archive:"]
            .iter()
            .any(|s| name.starts_with(s));
        let registry = name.split_once('/').filter(|(host, _)| {
            !local && (host.contains('.') || host.contains(':') || *host == "localhost")
        });
        let mut pkg = json!({
            "SPDXID": id,
            "name": name,
            "versionInfo": digest.as_str(),
            "supplier": NOASSERTION,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": digest.hex()}],
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "CONTAINER",
            "comment": format!("the base image {name}@{digest}, which this image is built on"),
        });
        if let Some((_, path)) = registry {
            let repo = name.split('@').next().unwrap_or(name);
            let repo = match repo.rsplit_once(':') {
                Some((r, tag)) if !tag.contains('/') => r,
                _ => repo,
            };
            let last = path
                .split(['@', ':'])
                .next()
                .unwrap_or(path)
                .rsplit('/')
                .next()
                .unwrap_or(path);
            let purl = format!(
                "pkg:oci/{}@{}?repository_url={}",
                purl_encode(last),
                purl_encode(digest.as_str()),
                purl_encode(repo)
            );
            pkg["externalRefs"] = json!([purl_ref(&purl)]);
            pkg["downloadLocation"] = json!(format!("docker://{name}"));
        }
        self.packages.push(pkg);
        self.relationships
            .push((IMAGE_SPDX_ID.into(), "DESCENDANT_OF", id.into()));
    }

    /// A package for each Debian package that owns a file of the image,
    /// with what it contains and which of the others it depends on.
    fn add_debian_packages(&mut self) {
        let owned = owners(self.input.plan, self.input.dbs);
        let mut deb_ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for o in owned.values() {
            let p = o.pkg;
            deb_ids.entry(p.name.as_str()).or_default().push(deb_id(p));
        }
        for o in owned.values() {
            let id = deb_id(o.pkg);
            let files = Files {
                facts: &self.files,
                ids: self.ids,
            };
            deb_relationships(&mut self.relationships, o, &id, files, &deb_ids);
            let license = deb_license(o, &mut self.license_refs);
            self.packages.push(deb_package(o, id, license, files));
        }
    }

    /// A package for each Go module (and standard library) of the image's
    /// Go programs: a program's main module depends on the others; a
    /// program without one is generated from them.
    fn add_go_modules(&mut self) {
        let mut go_packages: BTreeMap<String, GoPackage> = BTreeMap::new();
        for (n, f) in self.files.iter().enumerate() {
            let Some(info) = &f.go else {
                continue;
            };
            let (main_id, members) = go_members(info);
            for m in members {
                let id = go_id(&m);
                self.relationships
                    .push((IMAGE_SPDX_ID.into(), "CONTAINS", id.clone().into()));
                match &main_id {
                    Some(main_id) if *main_id != id => {
                        self.relationships.push((
                            main_id.clone().into(),
                            "DEPENDS_ON",
                            id.clone().into(),
                        ));
                    }
                    _ => {
                        self.relationships.push((
                            self.ids.get(n).into(),
                            "GENERATED_FROM",
                            id.clone().into(),
                        ));
                    }
                }
                go_packages.entry(id).or_insert(m);
            }
        }
        for (id, g) in &go_packages {
            self.packages.push(go_package(id, g));
        }
    }

    /// The document, written as it is made (no value of the whole
    /// document is built): its fields in sorted order, as a JSON object's
    /// are, the packages sorted by SPDXID, the files in plan order, the
    /// relationships sorted, and the licenses SPDX does not know.
    fn write_json(mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.packages
            .sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));
        let mut relationships = std::mem::take(&mut self.relationships);
        relationships.sort_unstable();
        relationships.dedup();
        let header = document_header(&self.input);
        let licenses = (!self.license_refs.is_empty())
            .then(|| extracted_licenses(std::mem::take(&mut self.license_refs)));
        enum Part<'v> {
            Value(&'v Value),
            Packages,
            Files,
            Relationships,
        }
        let mut parts: BTreeMap<&str, Part> = header
            .as_object()
            .expect("the header is an object")
            .iter()
            .map(|(k, v)| (k.as_str(), Part::Value(v)))
            .collect();
        parts.insert("packages", Part::Packages);
        parts.insert("files", Part::Files);
        parts.insert("relationships", Part::Relationships);
        if let Some(l) = &licenses {
            parts.insert("hasExtractedLicensingInfos", Part::Value(l));
        }
        out.write_all(b"{")?;
        for (i, (key, part)) in parts.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut *out, key)?;
            out.write_all(b":")?;
            match part {
                Part::Value(v) => serde_json::to_writer(&mut *out, v)?,
                Part::Packages => write_array(out, &self.packages)?,
                Part::Files => write_array(
                    out,
                    self.files
                        .iter()
                        .enumerate()
                        .map(|(n, f)| FileJson::of(f, self.ids.get(n))),
                )?,
                Part::Relationships => write_array(
                    out,
                    relationships.iter().map(|(a, t, b)| RelationshipJson {
                        related: b,
                        kind: t,
                        element: a,
                    }),
                )?,
            }
        }
        out.write_all(b"}")
    }
}

/// `[a,b,…]`, each element serialized as it comes.
fn write_array<T: serde::Serialize>(
    out: &mut impl std::io::Write,
    items: impl IntoIterator<Item = T>,
) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &item)?;
    }
    out.write_all(b"]")
}

/// A file of the document (fields in sorted order, as a JSON object's).
#[derive(serde::Serialize)]
struct FileJson<'a> {
    #[serde(rename = "SPDXID")]
    id: &'a str,
    checksums: [ChecksumJson; 2],
    #[serde(rename = "copyrightText")]
    copyright: &'static str,
    #[serde(rename = "fileName")]
    name: String,
    #[serde(rename = "licenseConcluded")]
    license: &'static str,
}

#[derive(serde::Serialize)]
struct ChecksumJson {
    algorithm: &'static str,
    #[serde(rename = "checksumValue")]
    value: String,
}

impl<'a> FileJson<'a> {
    fn of(f: &FileFacts, id: &'a str) -> FileJson<'a> {
        FileJson {
            id,
            checksums: [
                ChecksumJson {
                    algorithm: "SHA1",
                    value: hex(&f.sha1),
                },
                ChecksumJson {
                    algorithm: "SHA256",
                    value: hex(&f.sha256),
                },
            ],
            copyright: NOASSERTION,
            name: format!("./{}", f.path.rel()),
            license: NOASSERTION,
        }
    }
}

/// A relationship of the document (fields in sorted order).
#[derive(serde::Serialize)]
struct RelationshipJson<'a> {
    #[serde(rename = "relatedSpdxElement")]
    related: &'a str,
    #[serde(rename = "relationshipType")]
    kind: &'a str,
    #[serde(rename = "spdxElementId")]
    element: &'a str,
}

/// A Debian package's relationships: the image contains it, it contains
/// its files, and it depends on the image's packages its Depends and
/// Pre-Depends name.
fn deb_relationships<'i>(
    relationships: &mut Vec<Relationship<'i>>,
    o: &Owned,
    id: &str,
    files: Files<'_, 'i>,
    deb_ids: &BTreeMap<&str, Vec<String>>,
) {
    relationships.push((IMAGE_SPDX_ID.into(), "CONTAINS", id.to_string().into()));
    for (path, ..) in &o.files {
        let file_id = files.ids.get(files.index(path));
        relationships.push((id.to_string().into(), "CONTAINS", file_id.into()));
    }
    for dep in depends(o.pkg) {
        for dep_id in deb_ids.get(dep.as_str()).into_iter().flatten() {
            if *dep_id != id {
                relationships.push((id.to_string().into(), "DEPENDS_ON", dep_id.clone().into()));
            }
        }
    }
}

/// The image's files and their ids, looked up by path.
#[derive(Clone, Copy)]
struct Files<'f, 'i> {
    /// In plan order, which is path order.
    facts: &'f [FileFacts<'f>],
    ids: &'i FileIds,
}

impl Files<'_, '_> {
    /// The index of the regular file at `path`, which a package owns.
    fn index(&self, path: &ImagePath) -> usize {
        self.facts
            .binary_search_by(|f| f.path.cmp(path))
            .expect("a package's files are regular files of the plan")
    }
}

/// A Debian package's SPDX license expression, or NOASSERTION; the names it
/// uses that SPDX does not list are added to `license_refs`.
fn deb_license(o: &Owned, license_refs: &mut BTreeMap<String, String>) -> String {
    let (license, names) = o.db.licenses(o.pkg);
    match &license {
        Some(l) => {
            for name in &names {
                let lid = crate::dpkg::spdx_license_id(name);
                if lid.starts_with("LicenseRef-") {
                    license_refs.entry(lid).or_insert_with(|| name.clone());
                }
            }
            l.clone()
        }
        None => NOASSERTION.into(),
    }
}

/// A Debian package's SPDX package, with the verification code of the
/// image files it owns.
fn deb_package(o: &Owned, id: String, license: String, files: Files) -> Value {
    let p = o.pkg;
    let source_field = p.field("Source").unwrap_or_default();
    let source_version = source_field
        .split_once('(')
        .and_then(|(_, v)| v.split_once(')'))
        .map(|(v, _)| v.trim().to_string())
        .unwrap_or_else(|| p.version.clone());
    let source_name = p.source.as_deref().unwrap_or(&p.name);
    let mut pkg = json!({
        "SPDXID": id,
        "name": p.name,
        "versionInfo": p.version,
        "supplier": NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": true,
        "packageVerificationCode": {
            "packageVerificationCodeValue":
                verification_code(o.files.iter().map(|(path, ..)| &files.facts[files.index(path)].sha1)),
        },
        "licenseConcluded": license,
        "licenseDeclared": license,
        "copyrightText": NOASSERTION,
        "sourceInfo": format!("built package from: {source_name} {source_version}"),
        "externalRefs": [purl_ref(&deb_purl(o.db, p))],
    });
    if let Some(summary) = p
        .field("Description")
        .and_then(|d| d.lines().next().map(str::trim).map(str::to_string))
        .filter(|s| !s.is_empty())
    {
        pkg["summary"] = Value::String(summary);
    }
    pkg
}

/// The modules a Go program's build information records: the standard
/// library, the dependencies, then the main module (last), with the main
/// module's SPDX id when it has one.
fn go_members(info: &BuildInfo) -> (Option<String>, Vec<GoPackage>) {
    let mut members: Vec<GoPackage> = Vec::new();
    let main = match (&info.main, &info.path) {
        (Some(m), _) => {
            let m = m.effective();
            Some(go_module(&m.path, &m.version))
        }
        (None, Some(path)) => Some(go_module(path, "")),
        (None, None) => None,
    };
    if let Some(v) = info.stdlib_version() {
        members.push(GoPackage {
            name: "stdlib".into(),
            version: Some(format!("go{v}")),
            purl: format!("pkg:golang/stdlib@{}", purl_encode(&v)),
            cpe: Some(format!(
                "cpe:2.3:a:golang:go:{}:-:*:*:*:*:*:*",
                cpe_encode(&v)
            )),
        });
    }
    for d in &info.deps {
        let d = d.effective();
        members.push(go_module(&d.path, &d.version));
    }
    let main_id = main.as_ref().map(go_id);
    if let Some(m) = main {
        members.push(m);
    }
    (main_id, members)
}

/// A Go module's SPDX package, with its PURL and (for the standard
/// library) its CPE.
fn go_package(id: &str, g: &GoPackage) -> Value {
    let mut refs = vec![purl_ref(&g.purl)];
    if let Some(cpe) = &g.cpe {
        refs.push(json!({
            "referenceCategory": "SECURITY",
            "referenceType": "cpe23Type",
            "referenceLocator": cpe,
        }));
    }
    let mut pkg = json!({
        "SPDXID": id,
        "name": g.name,
        "supplier": NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "externalRefs": refs,
    });
    if let Some(v) = &g.version {
        pkg["versionInfo"] = Value::String(v.clone());
    }
    pkg
}

/// The document's own fields: SPDX version, name, namespace and creation.
fn document_header(input: &SbomInput) -> Value {
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}:{} {}", input.name, input.tag, input.platform),
        "documentNamespace": format!("https://bareroot.dev/spdx/{}/{}", input.name, input.manifest_digest),
        "creationInfo": {
            "created": rfc3339(input.epoch),
            "creators": [format!("Tool: bareroot-{}", env!("CARGO_PKG_VERSION"))],
        },
    })
}

/// `hasExtractedLicensingInfos`: each LicenseRef with the Debian name it
/// stands for.
fn extracted_licenses(license_refs: BTreeMap<String, String>) -> Value {
    license_refs
        .into_iter()
        .map(|(id, name)| {
            json!({
                "licenseId": id,
                "name": name,
                "extractedText": format!(
                    "The license Debian's machine-readable copyright files call \"{name}\"; \
                     its text is in the package's /usr/share/doc/<package>/copyright."
                ),
            })
        })
        .collect()
}

/// A file's Go build information when it is an ELF Go program. Only ELF
/// files are read whole.
fn go_facts(src: &Path) -> Result<Option<BuildInfo>> {
    let mut f = fs::File::open(src).with_path("open", src)?;
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).with_path("read", src)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    if !crate::elf::is_elf(&head[..n]) {
        return Ok(None);
    }
    // Mapped, not read: only the pages the lookup touches are loaded.
    // SAFETY: a read-only private map of an input file.
    let map = unsafe { memmap2::Mmap::map(&f) }.with_path("map", src)?;
    Ok(gobuildinfo::parse(&map))
}

use crate::digest::hex;

/// SPDX's package verification code: the SHA-1 of the sorted SHA-1s.
fn verification_code<'a>(sha1s: impl Iterator<Item = &'a [u8; 20]>) -> String {
    // Sorting the digests' bytes sorts their hex forms alike.
    let mut all: Vec<&[u8; 20]> = sha1s.collect();
    all.sort_unstable();
    let mut code = Sha1::new();
    for sha1 in all {
        code.update(hex(sha1).as_bytes());
    }
    hex(&code.finalize())
}

/// "SPDXRef-<kind>-<readable>-<8 hex>": readable, and unique through a hash
/// of `key` (the readable part alone loses characters SPDX ids cannot hold).
fn spdx_id(kind: &str, readable: &str, key: &[&str]) -> String {
    let mut id = String::new();
    spdx_id_into(&mut id, kind, readable, key);
    id
}

/// [`spdx_id`], appended to `out`.
fn spdx_id_into(out: &mut String, kind: &str, readable: &str, key: &[&str]) {
    let clean: String = readable
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let hash = hex(&Sha256::digest(key.join("\0").as_bytes()));
    out.push_str("SPDXRef-");
    out.push_str(kind);
    out.push('-');
    out.push_str(clean.trim_matches('-'));
    out.push('-');
    out.push_str(&hash[..8]);
}

fn deb_id(p: &Package) -> String {
    spdx_id(
        "Package-deb",
        &format!("{}-{}", p.name, p.architecture),
        &[&p.name, &p.version, &p.architecture],
    )
}

fn go_id(g: &GoPackage) -> String {
    spdx_id(
        "Package-go",
        &g.name,
        &[&g.name, g.version.as_deref().unwrap_or("")],
    )
}

/// A Go module package; "(devel)" or no version leaves the PURL without one.
fn go_module(path: &str, version: &str) -> GoPackage {
    let purl_version = match version {
        "" | "(devel)" => String::new(),
        v => format!("@{}", purl_encode(v)),
    };
    let segments: Vec<String> = path.split('/').map(purl_encode).collect();
    GoPackage {
        name: path.to_string(),
        version: (!version.is_empty()).then(|| version.to_string()),
        purl: format!("pkg:golang/{}{purl_version}", segments.join("/")),
        cpe: None,
    }
}

/// pkg:deb/<distro id>/<name>@<version>?arch=<arch>[&distro=<id>-<version id>].
fn deb_purl(db: &DpkgDb, p: &Package) -> String {
    let distro = db.distro().filter(|d| {
        d.id.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    });
    let namespace = distro.map(|d| d.id.as_str()).unwrap_or("debian");
    let mut purl = format!(
        "pkg:deb/{namespace}/{}@{}?arch={}",
        purl_encode(&p.name),
        purl_encode(&p.version),
        purl_encode(&p.architecture)
    );
    if let Some(v) = distro.and_then(|d| d.version_id.as_deref()) {
        purl.push_str(&format!(
            "&distro={}",
            purl_encode(&format!("{namespace}-{v}"))
        ));
    }
    purl
}

fn purl_ref(purl: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    })
}

/// Percent-encode everything but unreserved characters (as the PURL spec
/// asks of names, versions and qualifier values: "+" becomes "%2B", ":" "%3A").
fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escape a CPE 2.3 formatted-string component.
fn cpe_encode(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The package names of Depends and Pre-Depends, alternatives included,
/// without versions or architecture qualifiers.
fn depends(p: &Package) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for field in ["Pre-Depends", "Depends"] {
        let Some(v) = p.field(field) else {
            continue;
        };
        for alt in v.split([',', '|']) {
            let name = alt.split(['(', '[', '<']).next().unwrap_or("").trim();
            let name = name.split(':').next().unwrap_or("").trim();
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::packages::fixture::{plan, root};

    fn sbom(plan: &Plan, dbs: &[DpkgDb], digest: &str) -> Result<Vec<u8>> {
        sbom_on(plan, dbs, digest, None)
    }

    fn sbom_on(
        plan: &Plan,
        dbs: &[DpkgDb],
        digest: &str,
        base: Option<(&str, &crate::digest::Digest)>,
    ) -> Result<Vec<u8>> {
        spdx(&SbomInput {
            name: "test/app",
            tag: "v1",
            platform: &"linux/amd64".parse().unwrap(),
            epoch: 1_700_000_000,
            manifest_digest: digest,
            plan,
            dbs,
            digests: Default::default(),
            prepared: None,
            base,
        })
    }

    #[test]
    fn a_base_is_named_as_what_the_image_descends_from() {
        let t = root();
        let (plan, dbs) = (plan(t.path(), false), vec![]);
        let d = crate::digest::Digest::parse(DIGEST).unwrap();
        let doc: Value = serde_json::from_slice(
            &sbom_on(
                &plan,
                &dbs,
                DIGEST,
                Some(("127.0.0.1:5000/base/debian:12", &d)),
            )
            .unwrap(),
        )
        .unwrap();
        let base = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-Base")
            .expect("a base package");
        assert_eq!(base["name"], "127.0.0.1:5000/base/debian:12");
        assert_eq!(base["versionInfo"], DIGEST);
        let purl = base["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap();
        assert!(
            purl.starts_with("pkg:oci/debian@sha256%3A0123")
                && purl.ends_with("repository_url=127.0.0.1%3A5000%2Fbase%2Fdebian"),
            "{purl}"
        );
        assert!(doc["relationships"].as_array().unwrap().iter().any(|r| {
            r["spdxElementId"] == IMAGE_SPDX_ID
                && r["relationshipType"] == "DESCENDANT_OF"
                && r["relatedSpdxElement"] == "SPDXRef-Base"
        }));
        // Without a base, no such package.
        let doc: Value = serde_json::from_slice(&sbom(&plan, &dbs, DIGEST).unwrap()).unwrap();
        assert!(!doc.to_string().contains("SPDXRef-Base"));
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn spdx_document_describes_files_and_packages() {
        let t = root();
        let dbs = vec![DpkgDb::load(t.path()).unwrap().unwrap()];
        let plan = plan(t.path(), false);
        let bytes = sbom(&plan, &dbs, DIGEST).unwrap();
        assert_eq!(bytes, sbom(&plan, &dbs, DIGEST).unwrap(), "deterministic");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            doc["documentNamespace"],
            format!("https://bareroot.dev/spdx/test/app/{DIGEST}")
        );
        let files = doc["files"].as_array().unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f["fileName"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "./etc/passwd",
                "./lib/x86_64-linux-gnu/libc.so.6",
                "./opt/mine.so",
                "./usr/lib/x86_64-linux-gnu/libz.so.1"
            ]
        );
        assert_eq!(
            files[2]["checksums"][1]["checksumValue"],
            hex(&Sha256::digest(b"mine"))
        );
        assert_eq!(
            files[2]["checksums"][0]["checksumValue"],
            hex(&Sha1::digest(b"mine"))
        );

        let pkgs = doc["packages"].as_array().unwrap();
        let by_name = |n: &str| pkgs.iter().find(|p| p["name"] == n).unwrap();
        let z = by_name("zlib1g");
        assert_eq!(z["versionInfo"], "1:1.3+dfsg-1");
        assert_eq!(
            z["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/zlib1g@1%3A1.3%2Bdfsg-1?arch=amd64&distro=debian-12"
        );
        assert_eq!(z["licenseDeclared"], "LicenseRef-public-domain AND Zlib");
        assert_eq!(z["sourceInfo"], "built package from: zlib 1:1.3");
        let libc = by_name("libc6");
        assert_eq!(libc["licenseDeclared"], NOASSERTION);
        assert_eq!(libc["summary"], "GNU C Library");
        assert_eq!(
            libc["packageVerificationCode"]["packageVerificationCodeValue"],
            hex(&Sha1::digest(hex(&Sha1::digest(b"libc amd64")).as_bytes()))
        );
        let image = by_name("test/app");
        assert_eq!(image["SPDXID"], IMAGE_SPDX_ID);
        assert_eq!(
            image["externalRefs"][0]["referenceLocator"],
            format!("pkg:oci/app@sha256%3A{}?arch=amd64&tag=v1", &DIGEST[7..])
        );
        let refs = doc["hasExtractedLicensingInfos"].as_array().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["licenseId"], "LicenseRef-public-domain");

        let rels: BTreeSet<(String, String, String)> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["spdxElementId"].as_str().unwrap().to_string(),
                    r["relationshipType"].as_str().unwrap().to_string(),
                    r["relatedSpdxElement"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let rel = |a: &Value, t: &str, b: &Value| {
            rels.contains(&(
                a.as_str().unwrap().to_string(),
                t.to_string(),
                b.as_str().unwrap().to_string(),
            ))
        };
        assert!(rel(
            &json!("SPDXRef-DOCUMENT"),
            "DESCRIBES",
            &image["SPDXID"]
        ));
        assert!(rel(&image["SPDXID"], "CONTAINS", &z["SPDXID"]));
        assert!(rel(&z["SPDXID"], "CONTAINS", &files[3]["SPDXID"]));
        assert!(rel(&z["SPDXID"], "DEPENDS_ON", &libc["SPDXID"]));
        assert!(rel(&image["SPDXID"], "CONTAINS", &files[0]["SPDXID"]));
        assert!(!rel(&z["SPDXID"], "CONTAINS", &files[2]["SPDXID"]));
        // Every relationship names an element of the document.
        let ids: BTreeSet<&str> = pkgs
            .iter()
            .chain(files)
            .map(|e| e["SPDXID"].as_str().unwrap())
            .chain(["SPDXRef-DOCUMENT"])
            .collect();
        for (a, _, b) in &rels {
            assert!(
                ids.contains(a.as_str()) && ids.contains(b.as_str()),
                "{a} {b}"
            );
        }

        // A different digest: a different namespace, nothing else.
        let other = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_ne!(sbom(&plan, &dbs, other).unwrap(), bytes);
        let err = sbom(&plan, &dbs, "sha256:nope").unwrap_err().to_string();
        assert_eq!(
            err,
            "generate spdx sbom for test/app on linux/amd64: \"sha256:nope\" is not a sha256 digest"
        );
    }

    #[test]
    fn go_modules_become_packages() {
        let info = gobuildinfo::parse_modinfo(
            "path\texample.com/app/cmd/app\nmod\texample.com/app\t(devel)\t\n\
             dep\tgithub.com/A/b\tv1.2.3+incompatible\th1:x=\n\
             dep\tgolang.org/x/sys\tv0.1.0\th1:y=\n=>\tgithub.com/fork/sys\tv0.2.0\th1:z=\n",
        );
        let m = go_module("github.com/A/b", "v1.2.3+incompatible");
        assert_eq!(m.purl, "pkg:golang/github.com/A/b@v1.2.3%2Bincompatible");
        assert_eq!(
            go_module("example.com/app", "(devel)").purl,
            "pkg:golang/example.com/app"
        );
        assert_eq!(info.deps[1].effective().path, "github.com/fork/sys");
        assert_eq!(cpe_encode("1.21rc2"), "1.21rc2");
        assert_eq!(cpe_encode("a:b"), "a\\:b");
    }

    #[test]
    fn ids_are_valid_and_distinct() {
        let a = spdx_id(
            "File",
            "usr/lib/libstdc++.so.6",
            &["/usr/lib/libstdc++.so.6"],
        );
        let b = spdx_id(
            "File",
            "usr/lib/libstdc--.so.6",
            &["/usr/lib/libstdc--.so.6"],
        );
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(id
                .strip_prefix("SPDXRef-")
                .unwrap()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-'));
        }
        assert_eq!(purl_encode("2.36-9+deb12u4"), "2.36-9%2Bdeb12u4");
        assert_eq!(
            verification_code(std::iter::empty()),
            hex(&Sha1::digest(b""))
        );
    }
}
