//! `vcs = true`: the git checkout holding a recipe, as the annotations
//! `org.opencontainers.image.source` (the `origin` remote, credentials
//! taken out) and `org.opencontainers.image.revision` (the commit). The
//! same commit gives the same annotations; a tree with uncommitted changes
//! is named in a note, since the image may hold what no commit has.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// What git says of the checkout holding `dir`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkout {
    pub revision: String,
    pub source: Option<String>,
    /// `git status --porcelain` found changes.
    pub dirty: bool,
}

/// Ask git about the checkout holding `dir`.
pub fn checkout(dir: &Path) -> Result<Checkout> {
    let fail = |m: String| Error::msg(format!("read git checkout of {}: {m}", dir.display()));
    let git = |args: &[&str]| -> Result<Option<String>> {
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    fail("git is not installed (vcs = true needs it)".into())
                }
                _ => fail(format!("run git: {e}")),
            })?;
        Ok(o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string()))
    };
    let revision = git(&["rev-parse", "--verify", "HEAD"])?
        .filter(|r| r.len() >= 40 && r.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| fail("not a git checkout with a commit (vcs = true)".into()))?;
    let source = git(&["config", "--get", "remote.origin.url"])?
        .filter(|u| !u.is_empty())
        .map(|u| without_credentials(&u));
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"])?.is_some_and(|s| !s.is_empty());
    Ok(Checkout {
        revision,
        source,
        dirty,
    })
}

/// A remote URL without a user name or password (`https://u:t@host/x` →
/// `https://host/x`); scp-like `git@host:path` becomes `https://host/path`.
pub fn without_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return format!("{scheme}://{host}/{path}")
            .trim_end_matches('/')
            .to_string();
    }
    if let Some((user_host, path)) = url.split_once(':') {
        if !user_host.contains('/') {
            let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
            return format!("https://{host}/{}", path.trim_start_matches('/'));
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_annotation() {
        assert_eq!(
            without_credentials("https://user:tok@github.com/acme/app.git"),
            "https://github.com/acme/app.git"
        );
        assert_eq!(
            without_credentials("git@github.com:acme/app.git"),
            "https://github.com/acme/app.git"
        );
        assert_eq!(without_credentials("/srv/git/app"), "/srv/git/app");
        assert_eq!(
            without_credentials("ssh://git@host:2222/app"),
            "ssh://host:2222/app"
        );
    }
}
