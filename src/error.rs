//! One error type for the library: every message is a single lowercase line,
//! "verb object: cause", and names the path, recipe entry and platform where
//! there is one. Context is added by wrapping, so the chain reads outer to inner.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A bareroot error. `Display` prints the whole chain on one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O failure on a named path.
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A message that already says everything.
    Msg(String),
    /// An inner error with a prefix saying what was being done.
    Context { context: String, source: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn msg(m: impl Into<String>) -> Error {
        Error::Msg(m.into())
    }

    /// Wrap with a prefix ("build image jq for linux/amd64").
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// An `io::Error` on `path`, described by a verb phrase ("read", "create directory").
    pub fn io(what: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// True if the innermost cause is an `io::Error` of this kind.
    pub fn is_io_kind(&self, kind: io::ErrorKind) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == kind,
            Error::Context { source, .. } => source.is_io_kind(kind),
            Error::Msg(_) => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, path, source } => {
                write!(f, "{what} {}: {}", path.display(), io_message(source))
            }
            Error::Msg(m) => f.write_str(m),
            Error::Context { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

/// `s` made safe to print as one line: control characters (a newline or a
/// NUL inside a recipe path, say) are escaped as `\n`, `\u{0}`.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_MESSAGE + 64));
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    shorten(out)
}

/// The longest message printed whole; a longer one (a parser quoting a
/// megabyte-long key back) keeps its start and end.
const MAX_MESSAGE: usize = 2000;

fn shorten(s: String) -> String {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut head = MAX_MESSAGE * 3 / 4;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - MAX_MESSAGE / 4;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} … ({} bytes left out) … {}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

/// `io::Error`'s text without the "(os error N)" suffix, lowercased at the start.
pub fn io_message(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// Adds context to a `Result` with a lazily built prefix.
pub trait ResultExt<T> {
    fn context_with(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context_with(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.context(f()))
    }
}

/// Shorthand for `map_err(|e| Error::io(what, path, e))`.
pub trait IoResultExt<T> {
    fn with_path(self, what: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn with_path(self, what: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(what, path, e))
    }
}
