//! Compression and parallelism never change the bytes: every --jobs gives
//! the same digest for gzip, zstd and uncompressed layers, and each kind of
//! layer is a valid image that runs.

use std::collections::BTreeSet;

use crate::support::*;

#[test]
fn jobs_never_change_the_digest_and_every_compression_runs() {
    let tmp = tempdir();
    let recipe = repo().join("recipes/shell.toml");
    for (compression, media_type) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let mut digests = BTreeSet::new();
        for jobs in [1, 2, 8] {
            let out = tmp.path().join(format!("{compression}-{jobs}"));
            let s = ok(bareroot()
                .arg("build")
                .arg(&recipe)
                .arg("--output")
                .arg(&out)
                .arg("--quiet")
                .arg("--compression")
                .arg(compression)
                .arg("--jobs")
                .arg(jobs.to_string()));
            digests.insert(last_line(&s));
        }
        assert_eq!(
            digests.len(),
            1,
            "{compression}: digests differ across --jobs: {digests:?}"
        );
        let out = tmp.path().join(format!("{compression}-2"));
        let report: serde_json::Value =
            serde_json::from_str(&ok(bareroot().arg("inspect").arg("--json").arg(&out))).unwrap();
        let layer = &report[0]["images"][0]["layers"][0];
        assert_eq!(layer["mediaType"], media_type);
        if compression == "none" {
            assert_eq!(
                layer["digest"], layer["diff_id"],
                "an uncompressed layer's digest is its diff_id"
            );
        }
        let o = ok(bareroot().arg("run").arg(&out));
        assert_eq!(
            o.trim(),
            "hello from a bareroot shell image",
            "{compression}"
        );
    }
}

#[test]
fn compression_setting_is_checked() {
    let tmp = tempdir();
    let o = run(bareroot()
        .arg("build")
        .arg(repo().join("recipes/hello.toml"))
        .arg("--output")
        .arg(tmp.path().join("x"))
        .arg("--compression")
        .arg("gzip:12"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--compression") && err.contains("gzip:12"),
        "{err}"
    );
    assert!(!tmp.path().join("x").exists());
}

/// A build with the cache of `dir` (and no BAREROOT_NO_CACHE).
fn cached_build(recipe: &std::path::Path, out: &std::path::Path, dir: &std::path::Path) -> String {
    let s = ok(bareroot()
        .env_remove("BAREROOT_NO_CACHE")
        .env("BAREROOT_CACHE_DIR", dir)
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(out)
        .arg("--quiet"));
    last_line(&s)
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("layers"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    v.sort();
    v
}

#[test]
fn cache_hits_are_byte_identical_and_damage_or_changes_are_detected() {
    use std::fs;
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let inputs = tmp.path().join("in");
    fs::create_dir_all(&inputs).unwrap();
    fs::copy(repo().join("recipes/hello/hello"), inputs.join("hello")).unwrap();
    fs::write(inputs.join("data.txt"), "version one\n").unwrap();
    let recipe = inputs.join("r.toml");
    fs::write(
        &recipe,
        "name = \"cached\"\n[config]\nentrypoint = [\"/hello\"]\n[[binary]]\nsrc = \"hello\"\ndest = \"/hello\"\n[[file]]\nsrc = \"data.txt\"\ndest = \"/data.txt\"\n",
    )
    .unwrap();

    let first = cached_build(&recipe, &tmp.path().join("a"), &cache);
    assert_eq!(entries(&cache).len(), 1, "the layer is stored");
    let second = cached_build(&recipe, &tmp.path().join("b"), &cache);
    assert_eq!(first, second);
    let layer = |dir: &str| {
        let idx: serde_json::Value = serde_json::from_str(&ok(bareroot()
            .arg("inspect")
            .arg("--json")
            .arg(tmp.path().join(dir))))
        .unwrap();
        idx[0]["images"][0]["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(layer("a"), layer("b"));

    // The SBOM is kept beside the layer with its CRC-32 beside it; a hit
    // gives the same bytes, and a damaged stored copy is not used but made
    // again, the same.
    let sbom =
        |dir: &str| fs::read(tmp.path().join(dir).join("sbom-linux-amd64.spdx.json")).unwrap();
    let made = sbom("a");
    assert_eq!(sbom("b"), made);
    let mut stored: Vec<_> = fs::read_dir(&entries(&cache)[0])
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("sbom-")
        })
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 2, "the SBOM and its CRC-32: {stored:?}");
    let crc = fs::read(&stored[1]).unwrap();
    assert!(stored[1].to_string_lossy().ends_with(".spdx.json.crc32"));
    assert_eq!(crc, crc32fast::hash(&made).to_le_bytes(), "the CRC-32, LE");
    let mut kept = fs::read(&stored[0]).unwrap();
    assert_eq!(kept, made, "stored as is");
    let n = kept.len();
    kept[n - 2] ^= 1;
    // Not written in place: it is a hard link to the layouts' copies.
    fs::remove_file(&stored[0]).unwrap();
    fs::write(&stored[0], &kept).unwrap();
    cached_build(&recipe, &tmp.path().join("a2"), &cache);
    assert_eq!(sbom("a2"), made);
    assert_eq!(fs::read(&stored[0]).unwrap(), made, "stored again");

    // A damaged entry is detected, not used: the layer is rebuilt, the same.
    let entry = entries(&cache).remove(0);
    let blob = entry.join("blob");
    let mut bytes = fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::remove_file(&blob).unwrap(); // it may be a hard link to a layout's blob
    fs::write(&blob, &bytes).unwrap();
    assert_eq!(cached_build(&recipe, &tmp.path().join("c"), &cache), first);
    fs::write(entry.join("meta.json"), "{\"digest\":").unwrap();
    assert_eq!(cached_build(&recipe, &tmp.path().join("d"), &cache), first);
    assert!(entries(&cache)
        .iter()
        .all(|e| e.join("meta.json").is_file()));

    // Changed input bytes of the same size and mtime are always seen.
    let mtime = fs::metadata(inputs.join("data.txt"))
        .unwrap()
        .modified()
        .unwrap();
    fs::write(inputs.join("data.txt"), "version two\n").unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(inputs.join("data.txt"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let changed = cached_build(&recipe, &tmp.path().join("e"), &cache);
    assert_ne!(
        changed, first,
        "a content change must not hit the old entry"
    );
    let uncached = last_line(&ok(bareroot()
        .arg("build")
        .arg(&recipe)
        .arg("--output")
        .arg(tmp.path().join("f"))
        .arg("--quiet")));
    assert_eq!(changed, uncached);

    // --no-cache rebuilds and gives the same bytes.
    let s = ok(bareroot()
        .env_remove("BAREROOT_NO_CACHE")
        .env("BAREROOT_CACHE_DIR", &cache)
        .arg("build")
        .arg(&recipe)
        .arg("--output")
        .arg(tmp.path().join("g"))
        .arg("--quiet")
        .arg("--no-cache"));
    assert_eq!(last_line(&s), changed);

    // The cache is bounded: with a tiny bound old entries go.
    let s = ok(bareroot()
        .env_remove("BAREROOT_NO_CACHE")
        .env("BAREROOT_CACHE_DIR", &cache)
        .env("BAREROOT_CACHE_MAX_BYTES", "1")
        .arg("build")
        .arg(repo().join("recipes/hello.toml"))
        .arg("--output")
        .arg(tmp.path().join("h"))
        .arg("--quiet"));
    assert!(!last_line(&s).is_empty());
    assert!(entries(&cache).len() <= 1, "{:?}", entries(&cache));
}

/// The stat cache keeps each tree file's first bytes (they decide whether
/// it is a program, and its mode): an unchanged file is told from them, a
/// changed one (same size, same mtime) is read again.
#[test]
fn a_tree_file_that_becomes_a_script_is_probed_again_despite_the_stat_cache() {
    use std::fs;
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/tool"), "echo data, not run\n").unwrap();
    fs::write(tree.join("readme"), "plain\n").unwrap();
    let when = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(tree.join("bin/tool"), when).unwrap();
    let recipe = tmp.path().join("r.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"probed\"\n[[tree]]\nsrc = \"{}\"\ndest = \"/app\"\n",
            tree.display()
        ),
    )
    .unwrap();
    let full = |out: &str| {
        last_line(&ok(bareroot()
            .arg("build")
            .arg(&recipe)
            .arg("--no-cache")
            .arg("--output")
            .arg(tmp.path().join(out))
            .arg("--quiet")))
    };
    let first = cached_build(&recipe, &tmp.path().join("a"), &cache);
    assert_eq!(first, full("a-full"));
    assert_eq!(cached_build(&recipe, &tmp.path().join("b"), &cache), first);
    // The same size and mtime, other first bytes: a script now (mode 0755).
    fs::write(tree.join("bin/tool"), "#!/bin/sh\necho run\n").unwrap();
    filetime::set_file_mtime(tree.join("bin/tool"), when).unwrap();
    let again = cached_build(&recipe, &tmp.path().join("c"), &cache);
    assert_ne!(again, first);
    assert_eq!(again, full("c-full"), "as a build without any cache");
    let mode = |layout: &str| {
        let o = ok(bareroot()
            .arg("inspect")
            .arg(tmp.path().join(layout))
            .arg("--json"));
        let v: serde_json::Value = serde_json::from_str(&o).unwrap();
        let files = v[0]["images"][0]["layers"][0]["files"].as_array().unwrap();
        let tool = files.iter().find(|f| f["path"] == "/app/bin/tool").unwrap();
        tool["mode"].as_str().unwrap().to_string()
    };
    assert_eq!(mode("b"), "0644", "data from the stat cache's head");
    assert_eq!(mode("c"), "0755", "a script once its bytes say so");
}

/// The stat cache file holds exactly what the recipe's last build used: an
/// unchanged rebuild leaves it as it is (not rewritten), a file gone from
/// the tree leaves it, a new one joins it.
#[test]
fn the_stat_cache_keeps_what_the_last_build_used_and_is_not_rewritten_unchanged() {
    use std::fs;
    let tmp = tempdir();
    let cache = tmp.path().join("cache");
    let tree = tmp.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..20 {
        fs::write(tree.join(format!("f{i:02}.txt")), format!("file {i}\n")).unwrap();
    }
    let recipe = tmp.path().join("r.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"statc\"\n[[tree]]\nsrc = \"{}\"\ndest = \"/d\"\n",
            tree.display()
        ),
    )
    .unwrap();
    let stat_file = || {
        let files: Vec<_> = fs::read_dir(cache.join("stat"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    let holds = |name: &str| {
        let bytes = fs::read(stat_file()).unwrap();
        let needle = tree.join(name);
        let needle = needle.to_str().unwrap().as_bytes();
        bytes.windows(needle.len()).any(|w| w == needle)
    };
    let first = cached_build(&recipe, &tmp.path().join("a"), &cache);
    let saved = fs::read(stat_file()).unwrap();
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let saved_inode = inode(&stat_file());
    assert!(holds("f00.txt") && holds("f19.txt"));
    assert_eq!(cached_build(&recipe, &tmp.path().join("b"), &cache), first);
    assert_eq!(fs::read(stat_file()).unwrap(), saved, "the same entries");
    assert_eq!(inode(&stat_file()), saved_inode, "not written again");
    fs::remove_file(tree.join("f07.txt")).unwrap();
    fs::write(tree.join("new.txt"), "new\n").unwrap();
    let changed = cached_build(&recipe, &tmp.path().join("c"), &cache);
    assert_ne!(changed, first);
    assert!(!holds("f07.txt"), "a file the build did not use is dropped");
    assert!(holds("new.txt") && holds("f06.txt") && holds("f08.txt"));
    assert_ne!(
        inode(&stat_file()),
        saved_inode,
        "rewritten (renamed into place)"
    );
    // And the rewritten file serves the next build: the same image again.
    assert_eq!(
        cached_build(&recipe, &tmp.path().join("d"), &cache),
        changed
    );
}
