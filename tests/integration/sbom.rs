//! Package metadata and the SPDX SBOM for a real plan: jq and skopeo from
//! the host with their closures. Checked against the host's own dpkg
//! (dpkg-query, dpkg's md5sums), md5sum and sha256sum, and validated with
//! the SPDX tools (`pyspdxtools`, from `pip install spdx-tools`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use bareroot::build::{plan_platform, BuildOptions};
use bareroot::dpkg::{parse_stanzas, DpkgDb};
use bareroot::plan::{packages, Item, ItemKind, Plan};
use bareroot::platform::Platform;
use bareroot::recipe::{ImagePath, Recipe};
use bareroot::sbom::{self, SbomInput};
use bareroot::toolchain::Toolchains;
use serde_json::Value;

use crate::support;

const RECIPE: &str = r#"
name = "sbom-test"
tag = "v1"

[[binary]]
src = "/usr/bin/jq"

[[binary]]
src = "/usr/bin/skopeo"
"#;

const DIGEST: &str = "sha256:5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

fn host_plan() -> Plan {
    support::require("jq", "jq");
    support::require("skopeo", "skopeo");
    let recipe = Recipe::parse(RECIPE, Path::new("/tmp/sbom-test.toml")).unwrap();
    plan_platform(
        &recipe,
        &Platform::host(),
        &BuildOptions::default(),
        &Toolchains::embedded(),
    )
    .unwrap()
}

fn host_dbs() -> Vec<DpkgDb> {
    vec![DpkgDb::load(Path::new("/"))
        .unwrap()
        .expect("this Debian host has a dpkg database")]
}

fn dpkg_query(package: &str, field: &str) -> String {
    support::ok(
        Command::new("dpkg-query")
            .arg("-W")
            .arg("-f")
            .arg(format!("${{{field}}}"))
            .arg(package),
    )
}

fn tool_hash(tool: &str, file: &Path) -> String {
    let out = support::ok(Command::new(tool).arg(file));
    out.split_whitespace().next().unwrap().to_string()
}

/// Image path → host path of the plan's copied files.
fn copied(plan: &Plan) -> BTreeMap<String, PathBuf> {
    plan.entries
        .iter()
        .filter_map(|(p, i)| match &i.kind {
            ItemKind::File { src, .. } => Some((p.as_str().to_string(), src.clone())),
            _ => None,
        })
        .collect()
}

/// The md5s dpkg itself recorded for a package's files.
fn dpkg_md5s(package: &str, arch: &str) -> BTreeSet<String> {
    let info = Path::new("/var/lib/dpkg/info");
    let text = std::fs::read_to_string(info.join(format!("{package}:{arch}.md5sums")))
        .or_else(|_| std::fs::read_to_string(info.join(format!("{package}.md5sums"))))
        .unwrap_or_else(|e| panic!("read dpkg md5sums of {package}: {e}"));
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn status_d_matches_host_dpkg() {
    let plan = host_plan();
    let dbs = host_dbs();
    let meta = packages::package_metadata(&plan, &dbs).unwrap();
    assert_eq!(meta, packages::package_metadata(&plan, &dbs).unwrap());
    let files = copied(&plan);

    let mut listed_anywhere = BTreeSet::new();
    for (key, bytes) in &meta {
        let text = std::str::from_utf8(bytes).unwrap();
        let name = key
            .strip_prefix("/var/lib/dpkg/status.d/")
            .unwrap_or_else(|| panic!("{key} is not in status.d"));
        if let Some(package) = name.strip_suffix(".md5sums") {
            let stanza = &meta[&format!("/var/lib/dpkg/status.d/{package}")];
            let arch = parse_stanzas(std::str::from_utf8(stanza).unwrap())[0]
                .iter()
                .find(|f| f.name == "Architecture")
                .unwrap()
                .value
                .clone();
            let recorded = dpkg_md5s(package, &arch);
            let mut paths = Vec::new();
            for line in text.lines() {
                let (md5, path) = line
                    .split_once("  ")
                    .unwrap_or_else(|| panic!("{key}: bad line {line:?}"));
                assert!(md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(!path.starts_with('/'), "{key}: {path}");
                let src = files
                    .get(&format!("/{path}"))
                    .unwrap_or_else(|| panic!("{key}: {path} is not a file of the image"));
                assert_eq!(md5, tool_hash("md5sum", src), "{key}: {path}");
                assert!(
                    recorded.contains(md5),
                    "{key}: {path} ({md5}) is not one of {package}'s files by dpkg's own md5sums"
                );
                paths.push(path.to_string());
                assert!(
                    listed_anywhere.insert(path.to_string()),
                    "{path} listed twice"
                );
            }
            assert!(!paths.is_empty(), "{key} is empty");
            let mut sorted = paths.clone();
            sorted.sort();
            assert_eq!(paths, sorted, "{key} is not sorted");
        } else {
            let stanzas = parse_stanzas(text);
            assert_eq!(stanzas.len(), 1, "{key}: one stanza");
            for line in text.lines() {
                assert!(
                    line.starts_with([' ', '\t'])
                        || line
                            .split_once(':')
                            .is_some_and(|(f, _)| !f.is_empty() && !f.contains(' ')),
                    "{key}: not a control line: {line:?}"
                );
            }
            let field = |n: &str| {
                stanzas[0]
                    .iter()
                    .find(|f| f.name == n)
                    .map(|f| f.value.clone())
            };
            assert_eq!(
                field("Package").as_deref(),
                Some(name.split(':').next().unwrap())
            );
            assert!(field("Status").is_none(), "{key} keeps Status");
            assert!(field("Conffiles").is_none(), "{key} keeps Conffiles");
            assert!(meta.contains_key(&format!("{key}.md5sums")));
        }
    }

    for package in ["jq", "libjq1", "libc6", "libonig5", "skopeo"] {
        let stanza = meta
            .get(&format!("/var/lib/dpkg/status.d/{package}"))
            .unwrap_or_else(|| panic!("no status.d entry for {package}: {:?}", meta.keys()));
        let text = std::str::from_utf8(stanza).unwrap();
        let version = dpkg_query(package, "Version");
        assert!(text.contains(&format!("\nVersion: {version}\n")), "{text}");
        let arch = dpkg_query(package, "Architecture");
        assert!(
            text.contains(&format!("\nArchitecture: {arch}\n")),
            "{text}"
        );
    }
    // dpkg itself reads the stanzas back (as a status file, which needs a
    // Status line), without a warning, as the host's dpkg describes them.
    let admin = support::tempdir();
    let mut status = String::new();
    let mut names = Vec::new();
    for (key, bytes) in &meta {
        if key.ends_with(".md5sums") {
            continue;
        }
        let text = std::str::from_utf8(bytes).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        status.push_str(&format!("{first}\nStatus: install ok installed\n{rest}\n"));
        names.push(first.strip_prefix("Package: ").unwrap().to_string());
    }
    std::fs::write(admin.path().join("status"), status).unwrap();
    let format = "${binary:Package} ${Version} ${Architecture}\n";
    let out = support::run(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}", admin.path().display()))
            .args(["-W", "-f", format]),
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dpkg-query on the status.d stanzas:\n{}",
        support::stderr(&out)
    );
    let host = support::ok(
        Command::new("dpkg-query")
            .args(["-W", "-f", format])
            .args(&names),
    );
    let sorted = |s: &str| s.lines().map(str::to_string).collect::<BTreeSet<_>>();
    assert_eq!(sorted(&support::stdout(&out)), sorted(&host));

    let sums = |p: &str| {
        String::from_utf8(meta[&format!("/var/lib/dpkg/status.d/{p}.md5sums")].clone()).unwrap()
    };
    assert!(sums("jq").contains("  usr/bin/jq\n"), "{}", sums("jq"));
    assert!(sums("skopeo").contains("  usr/bin/skopeo\n"));
    // The package's copyright file comes along, as in distroless.
    assert!(
        sums("jq").contains("  usr/share/doc/jq/copyright\n"),
        "{}",
        sums("jq")
    );
    assert!(sums("libjq1").contains("/libjq.so.1"), "{}", sums("libjq1"));
    assert!(sums("libc6").contains("/libc.so.6\n"));
}

/// The status.d files in the plan as generated files, as a build adds them.
fn with_metadata(mut plan: Plan, meta: &BTreeMap<String, Vec<u8>>) -> Plan {
    for (path, bytes) in meta {
        let item = Item::data(bytes.clone(), "package metadata");
        plan.insert(&ImagePath::new(path).unwrap(), item).unwrap();
    }
    plan
}

fn pyspdxtools() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pyspdxtools"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs `pyspdxtools`: install it with `pip install spdx-tools` \
             (or run scripts/test.sh, which installs every test dependency)"
        )
    })
}

#[test]
fn spdx_sbom_validates_and_names_packages_and_modules() {
    let tool = pyspdxtools();
    let dbs = host_dbs();
    let plan = host_plan();
    let meta = packages::package_metadata(&plan, &dbs).unwrap();
    let plan = with_metadata(plan, &meta);
    let platform = Platform::host();
    let input = SbomInput {
        name: "sbom-test",
        tag: "v1",
        platform: &platform,
        epoch: 1_700_000_000,
        manifest_digest: DIGEST,
        plan: &plan,
        dbs: &dbs,
        digests: Default::default(),
        prepared: None,
        base: None,
    };
    let bytes = sbom::spdx(&input).unwrap();
    assert_eq!(
        bytes,
        sbom::spdx(&input).unwrap(),
        "same inputs, same bytes"
    );
    // A build gathers the licenses and Go facts while the layer is
    // written: the document is the same.
    let prepared = sbom::prepare(&plan, &dbs).unwrap();
    assert_eq!(prepared.outside, sbom::outside_facts(&plan, &dbs));
    let with_prepared = SbomInput {
        prepared: Some(&prepared),
        ..input
    };
    assert_eq!(
        bytes,
        sbom::spdx(&with_prepared).unwrap(),
        "facts gathered ahead, same bytes"
    );

    let dir = support::tempdir();
    let file = dir.path().join("sbom-test.spdx.json");
    std::fs::write(&file, &bytes).unwrap();
    let out = support::run(Command::new(&tool).arg("-i").arg(&file));
    let all = format!("{}{}", support::stdout(&out), support::stderr(&out));
    assert!(
        out.status.success() && !all.to_lowercase().contains("invalid"),
        "pyspdxtools -i {} rejected the document ({}):\n{all}",
        file.display(),
        out.status
    );

    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(
        doc["documentNamespace"],
        format!("https://bareroot.dev/spdx/sbom-test/{DIGEST}")
    );
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");

    // Every regular file of the image, with sha256sum's and sha1sum's hashes.
    let files = doc["files"].as_array().unwrap();
    let by_name: BTreeMap<&str, &Value> = files
        .iter()
        .map(|f| (f["fileName"].as_str().unwrap(), f))
        .collect();
    let regular: Vec<String> = plan
        .entries
        .iter()
        .filter(|(_, i)| matches!(i.kind, ItemKind::File { .. } | ItemKind::Data { .. }))
        .map(|(p, _)| format!(".{p}"))
        .collect();
    assert_eq!(by_name.keys().copied().collect::<Vec<_>>(), regular);
    for (image, src) in copied(&plan) {
        let f = by_name[format!(".{image}").as_str()];
        let sums: BTreeMap<&str, &str> = f["checksums"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["algorithm"].as_str().unwrap(),
                    c["checksumValue"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(sums["SHA256"], tool_hash("sha256sum", &src), "{image}");
        assert_eq!(sums["SHA1"], tool_hash("sha1sum", &src), "{image}");
    }
    assert!(by_name.contains_key("./var/lib/dpkg/status.d/jq.md5sums"));

    // Debian packages with the host's versions and PURLs.
    let packages = doc["packages"].as_array().unwrap();
    let named = |n: &str| -> &Value {
        packages
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("no package {n} in the sbom"))
    };
    let purl = |p: &Value| {
        p["externalRefs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["referenceType"] == "purl")
            .unwrap()["referenceLocator"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for package in ["jq", "libjq1", "libc6", "skopeo"] {
        let p = named(package);
        let version = dpkg_query(package, "Version");
        assert_eq!(p["versionInfo"], version.as_str(), "{package}");
        let arch = dpkg_query(package, "Architecture");
        let expect = format!(
            "pkg:deb/debian/{package}@{}?arch={arch}",
            version.replace('+', "%2B").replace(':', "%3A")
        );
        assert!(purl(p).starts_with(&expect), "{} vs {expect}", purl(p));
    }
    // jq's copyright file is machine-readable; glibc's is not.
    assert_ne!(named("jq")["licenseDeclared"], "NOASSERTION");
    assert_eq!(named("libc6")["licenseDeclared"], "NOASSERTION");

    // skopeo's Go build information: its main package and the Go standard
    // library it was built with (Debian builds Go outside module mode, so
    // the binary records no dependency modules).
    let skopeo_main = named("github.com/containers/skopeo/cmd/skopeo");
    assert_eq!(
        purl(skopeo_main),
        "pkg:golang/github.com/containers/skopeo/cmd/skopeo"
    );
    let stdlib = named("stdlib");
    let go_version = stdlib["versionInfo"].as_str().unwrap();
    assert!(go_version.starts_with("go1."), "{go_version}");
    let skopeo_bytes = std::fs::read("/usr/bin/skopeo").unwrap();
    assert!(
        skopeo_bytes
            .windows(go_version.len())
            .any(|w| w == go_version.as_bytes()),
        "{go_version} is not in /usr/bin/skopeo"
    );
    assert_eq!(
        purl(stdlib),
        format!("pkg:golang/stdlib@{}", &go_version[2..])
    );

    let rels: BTreeSet<(String, String, String)> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (
                s("spdxElementId"),
                s("relationshipType"),
                s("relatedSpdxElement"),
            )
        })
        .collect();
    let id = |v: &Value| v["SPDXID"].as_str().unwrap().to_string();
    let has = |a: String, t: &str, b: String| rels.contains(&(a, t.to_string(), b));
    assert!(has(
        "SPDXRef-DOCUMENT".into(),
        "DESCRIBES",
        "SPDXRef-Image".into()
    ));
    assert!(has(
        id(named("jq")),
        "CONTAINS",
        id(by_name["./usr/bin/jq"])
    ));
    assert!(has(
        id(by_name["./usr/bin/skopeo"]),
        "GENERATED_FROM",
        id(skopeo_main)
    ));
    assert!(has(id(skopeo_main), "DEPENDS_ON", id(stdlib)));
    assert!(has(id(named("jq")), "DEPENDS_ON", id(named("libjq1"))));
}

/// The host's dpkg database finds owners of real paths that dpkg lists
/// under their pre-usr-merge names.
#[test]
fn host_owners_across_usr_merge() {
    let dbs = host_dbs();
    let db = &dbs[0];
    let libc = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2")
        .or_else(|_| std::fs::canonicalize("/lib/ld-linux-aarch64.so.1"))
        .expect("the host's dynamic loader");
    assert_eq!(db.owner(&libc).map(|p| p.name.as_str()), Some("libc6"));
    let jq = db.owner(Path::new("/usr/bin/jq")).unwrap();
    assert_eq!(jq.version, dpkg_query("jq", "Version"));
    assert_eq!(db.owner(Path::new("/etc/hostname")), None);
}

#[test]
fn build_writes_a_valid_sbom_next_to_index_json() {
    let tool = support::require("pyspdxtools", "spdx-tools (pip install spdx-tools)");
    support::require("jq", "jq");
    let tmp = support::tempdir();
    let recipe = support::repo().join("recipes/jq.toml");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let digest = support::build(&recipe, &a);
    assert_eq!(support::build(&recipe, &b), digest);
    let sbom = a.join("sbom-linux-amd64.spdx.json");
    let bytes = std::fs::read(&sbom).expect("the build writes sbom-linux-amd64.spdx.json");
    assert_eq!(
        bytes,
        std::fs::read(b.join("sbom-linux-amd64.spdx.json")).unwrap(),
        "the SBOM is reproducible"
    );
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        doc["documentNamespace"]
            .as_str()
            .unwrap()
            .contains(&digest[7..]),
        "the namespace derives from the image digest: {}",
        doc["documentNamespace"]
    );
    let names = field_set(&doc, "packages", "name");
    for want in ["jq", "libjq1", "libonig5", "libc6"] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    let o = support::run(Command::new(tool).arg("-i").arg(&sbom));
    assert!(o.status.success(), "pyspdxtools rejects the SBOM: {o:?}");
}

/// A Go program inside a `[[tree]]` is still described with its Go build
/// information (the tree's other files, seen not to be ELF by the probe,
/// are not opened again for it), and the data file beside it is listed.
#[test]
fn a_go_program_in_a_tree_keeps_its_go_build_information() {
    support::require("skopeo", "skopeo");
    let dir = support::run_dir("sbom-go-tree");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::copy("/usr/bin/skopeo", tree.join("bin/skopeo")).unwrap();
    std::fs::write(tree.join("README"), "not a program\n").unwrap();
    let recipe = dir.join("go-tree.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"go-tree\"\n\n[[tree]]\nsrc = \"{}\"\ndest = \"/opt/tool\"\n",
            tree.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let o = support::run(
        support::bareroot()
            .arg("build")
            .arg(&recipe)
            .arg("--output")
            .arg(&out)
            .arg("--quiet"),
    );
    assert!(o.status.success(), "build: {}", support::stderr(&o));
    let doc: Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("sbom-{}.spdx.json", Platform::host().slug()))).unwrap(),
    )
    .unwrap();
    let names = field_set(&doc, "packages", "name");
    assert!(
        names.contains("stdlib") && names.contains("github.com/containers/skopeo/cmd/skopeo"),
        "the Go program in the tree lost its Go packages: {names:?}"
    );
    let files = field_set(&doc, "files", "fileName");
    assert!(files.contains("./opt/tool/README"), "{files:?}");
    assert!(files.contains("./opt/tool/bin/skopeo"), "{files:?}");
}

/// The string values of `field` in the SPDX document's `list`.
fn field_set<'a>(doc: &'a Value, list: &str, field: &str) -> BTreeSet<&'a str> {
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[field].as_str())
        .collect()
}
