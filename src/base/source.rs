//! Where a base image comes from, as `[base] image` or `--base` names it:
//! `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE`,
//! `rootfs:FILE.tar[.gz|.zst|.xz]`, or a registry reference (`docker://REF`
//! or a bare `HOST/NAME[:TAG][@DIGEST]`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::Reference;

/// A parsed base source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Registry(Reference),
    /// An OCI image layout directory, and the `org.opencontainers.image.ref.name`
    /// to pick (else its only image).
    Oci {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// A tar of an OCI image layout.
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    /// `docker save` output.
    DockerArchive {
        file: PathBuf,
    },
    /// A root filesystem tarball, made into one layer.
    Rootfs {
        file: PathBuf,
    },
}

impl Source {
    /// Parse `s`; relative paths are taken from `relative_to` (the recipe's
    /// directory for `[base]`, the working directory for `--base`).
    pub fn parse(s: &str, relative_to: &Path) -> Result<Source> {
        let bad = |m: &str| Error::msg(format!("parse base image source {s:?}: {m}"));
        let path = |p: &str| -> Result<PathBuf> {
            if p.is_empty() {
                return Err(bad("the path is empty"));
            }
            let p = Path::new(p);
            Ok(if p.is_absolute() {
                p.to_path_buf()
            } else {
                relative_to.join(p)
            })
        };
        // DIR[:TAG]: a last `:` followed by a tag-shaped word names the tag.
        let with_tag = |rest: &str| -> Result<(PathBuf, Option<String>)> {
            match rest.rsplit_once(':') {
                Some((dir, tag))
                    if !dir.is_empty()
                        && !tag.is_empty()
                        && !tag.contains('/')
                        && tag
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
                {
                    Ok((path(dir)?, Some(tag.to_string())))
                }
                _ => Ok((path(rest)?, None)),
            }
        };
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Source::Registry(rest.parse()?));
        }
        let unknown = |scheme: &str| {
            bad(&format!(
                "unknown source scheme {scheme:?} (expected oci:DIR[:TAG], oci-archive:FILE[:TAG], \
                 docker-archive:FILE, rootfs:FILE.tar[.gz|.zst|.xz], docker://REF or a registry reference)"
            ))
        };
        if let Some((scheme, rest)) = s.split_once(':') {
            match scheme {
                "oci" => {
                    let (dir, tag) = with_tag(rest)?;
                    return Ok(Source::Oci { dir, tag });
                }
                "oci-archive" => {
                    let (file, tag) = with_tag(rest)?;
                    return Ok(Source::OciArchive { file, tag });
                }
                "docker-archive" => return Ok(Source::DockerArchive { file: path(rest)? }),
                "rootfs" => return Ok(Source::Rootfs { file: path(rest)? }),
                _ => {}
            }
            // `word:` before something no tag or port can be (a path, a
            // URL, an archive's name) is a scheme this does not know.
            let word = !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            let archive_name = [".tar", ".tgz", ".gz", ".zst", ".xz"]
                .iter()
                .any(|e| rest.ends_with(e));
            if word && (rest.starts_with('/') || rest.starts_with('.') || archive_name) {
                return Err(unknown(scheme));
            }
        }
        Ok(Source::Registry(s.parse()?))
    }

    /// Is the image named by content (a registry reference with a digest),
    /// so the same build gives the same bytes wherever it runs? Local
    /// sources are named by their bytes, which the build hashes.
    pub fn pinned(&self) -> bool {
        match self {
            Source::Registry(r) => r.digest.is_some(),
            _ => true,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Registry(r) => write!(f, "{r}"),
            Source::Oci { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            Source::OciArchive { file, tag } => {
                write!(f, "oci-archive:{}", file.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            Source::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
            Source::Rootfs { file } => write!(f, "rootfs:{}", file.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Source> {
        Source::parse(s, Path::new("/r"))
    }

    #[test]
    fn schemes_paths_and_tags() {
        assert_eq!(
            parse("oci:base:v1").unwrap(),
            Source::Oci {
                dir: "/r/base".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse("oci:/abs/dir").unwrap(),
            Source::Oci {
                dir: "/abs/dir".into(),
                tag: None
            }
        );
        assert_eq!(
            parse("rootfs:amd64.tar.gz").unwrap(),
            Source::Rootfs {
                file: "/r/amd64.tar.gz".into()
            }
        );
        assert_eq!(
            parse("docker-archive:/x/img.tar").unwrap(),
            Source::DockerArchive {
                file: "/x/img.tar".into()
            }
        );
        let Source::Registry(r) = parse("127.0.0.1:5000/library/debian:bookworm").unwrap() else {
            panic!("registry")
        };
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag.as_deref(), Some("bookworm"));
        let Source::Registry(r) = parse("docker://debian:12").unwrap() else {
            panic!("registry")
        };
        assert_eq!(r.to_string(), "docker.io/library/debian:12");
        assert!(!parse("debian:12").unwrap().pinned());
        for bad in ["ftp://host/x", "tarball:x.tar", "oci:", "rootfs:"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("parse base image source"), "{bad}: {e}");
        }
    }
}
