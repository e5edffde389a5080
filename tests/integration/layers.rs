//! Images of several layers, as base images pulled from a registry are:
//! a layout written by hand here (blobs, manifest, index) whose second
//! layer whites out a file of the first, makes a directory opaque, adds
//! through a symlinked directory and sets an owner, run with `bareroot run`
//! to see the filesystem the program gets.

use std::fs;
use std::io::Write;
use std::path::Path;

use bareroot::digest::Digest;
use serde_json::json;

use crate::support::{bareroot, ok, require, tempdir};

/// One tar member: (name, kind, link target or data, mode, uid).
enum M<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32, u64),
    Symlink(&'a str, &'a str),
}

fn tar(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_gid(0);
        match *m {
            M::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            M::File(name, data, mode, uid) => {
                h.set_mode(mode);
                h.set_uid(uid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data).unwrap();
            }
            M::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Store `bytes` as a blob of the layout at `root`; its descriptor.
fn blob(root: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let digest = Digest::of(bytes);
    fs::write(root.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
}

#[test]
fn run_sees_the_layers_applied_in_order_with_whiteouts() {
    let busybox = fs::read(require("busybox", "busybox-static")).unwrap();
    let t = tempdir();
    let root = t.path().join("layout");
    fs::create_dir_all(root.join("blobs/sha256")).unwrap();

    let lower = tar(&[
        M::Dir("bin"),
        M::File("bin/busybox", &busybox, 0o755, 0),
        M::Symlink("bin/sh", "busybox"),
        M::File("etc/gone", b"old", 0o644, 0),
        M::File("etc/kept", b"kept", 0o644, 0),
        M::File("data/lower", b"lower", 0o644, 0),
        M::Dir("usr/lib"),
        M::Symlink("lib", "usr/lib"),
    ]);
    let upper = tar(&[
        M::File("etc/.wh.gone", b"", 0o644, 0),
        M::File("etc/new", b"new", 0o644, 0),
        M::File("data/upper", b"upper", 0o644, 0),
        M::File("data/.wh..wh..opq", b"", 0o644, 0),
        M::File("lib/added", b"through lib", 0o644, 0),
        M::File("etc/owned", b"owned", 0o640, 1000),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&upper).unwrap();
    let upper_gz = gz.finish().unwrap();

    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c"]},
        "rootfs": {"type": "layers", "diff_ids": [
            Digest::of(&lower).to_string(), Digest::of(&upper).to_string()
        ]},
    });
    let config = blob(
        &root,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [
            blob(&root, "application/vnd.oci.image.layer.v1.tar", &lower),
            blob(&root, "application/vnd.oci.image.layer.v1.tar+gzip", &upper_gz),
        ],
    });
    let manifest = blob(
        &root,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let index = json!({"schemaVersion": 2, "manifests": [manifest]});
    fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    let script = "for f in /etc/gone /etc/kept /etc/new /data/lower /data/upper /usr/lib/added; do \
                  if [ -e $f ]; then echo \"$f: $(/bin/busybox cat $f)\"; else echo \"$f: missing\"; fi; \
                  done; /bin/busybox ls -a /etc; /bin/busybox stat -c '%u %a' /etc/owned";
    let out = ok(bareroot().arg("run").arg(&root).arg("--").arg(script));
    // SAFETY: geteuid has no preconditions.
    let owner = match unsafe { libc::geteuid() } {
        0 => "1000 640",
        // Not root: the files are ours, mapped to root in the namespace.
        _ => "0 640",
    };
    assert_eq!(
        out,
        format!(
            "/etc/gone: missing\n/etc/kept: kept\n/etc/new: new\n/data/lower: missing\n\
             /data/upper: upper\n/usr/lib/added: through lib\n.\n..\nkept\nnew\nowned\n{owner}\n"
        )
    );
}
