//! `ringproxy import-nginx`, the pure part: read an nginx configuration, find the upstream
//! that uses `hash ... consistent` (or the one named), and translate it into a ringproxy
//! configuration that routes every key to the same server ([`Translation::to_toml`]).
//!
//! Not a general nginx parser: the tokenizer and `include` are nginx's ([`parse`]), then only
//! the directives that matter for one upstream are read ([`translate`](mod@translate)):
//!
//! - the upstream's `server` lines, in listing order (the order ties on the ring follow), with
//!   `weight`; `max_fails`/`fail_timeout` → `health.fail_threshold`/`health.eject_for`;
//! - its `hash KEY consistent` → `[ring] compat = "nginx"` and the key as a template in
//!   nginx's own variable syntax ([`crate::affinity_template`]);
//! - in the `location` whose `proxy_pass` names the upstream (or inherited from its `server`
//!   or `http`): `proxy_connect_timeout` → `proxy.connect_timeout`, `proxy_read_timeout` →
//!   `proxy.request_timeout`.
//!
//! What cannot be translated (`backup`, `down`, `resolve`, unknown variables, `hash` without
//! `consistent`, other `proxy_*` settings...) becomes a [`Warning`] with its file and line;
//! directives ringproxy needs no translation for (`keepalive`, `proxy_http_version 1.1`,
//! `proxy_set_header Connection ""`) are accepted silently.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod glob;
mod output;
mod parse;
mod translate;

#[cfg(test)]
mod tests;

/// The translated upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The main configuration file read.
    pub main_file: PathBuf,
    /// The upstream's name and where its block starts.
    pub upstream: String,
    /// Where the upstream block starts.
    pub upstream_at: Place,
    /// The `hash` directive's key expression as written, and where (`None`: no `hash`).
    pub hash: Option<Setting<String>>,
    /// Whether that `hash` says `consistent`.
    pub consistent: bool,
    /// The affinity key template (`template:` source), when the expression translates.
    pub key: Option<String>,
    /// The servers, in nginx's listing order; `backup` servers are left out.
    pub backends: Vec<ImportedBackend>,
    /// `proxy_connect_timeout` → `proxy.connect_timeout`.
    pub connect_timeout: Option<Setting<Duration>>,
    /// `proxy_read_timeout` → `proxy.request_timeout`.
    pub request_timeout: Option<Setting<Duration>>,
    /// `max_fails` → `health.fail_threshold`.
    pub fail_threshold: Option<Setting<u32>>,
    /// `fail_timeout` → `health.eject_for`.
    pub eject_for: Option<Setting<Duration>>,
    /// What could not be translated, in file order.
    pub warnings: Vec<Warning>,
}

/// A file and a line in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A translated value, with the nginx text it came from and where that was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    /// The value in ringproxy's terms.
    pub value: T,
    /// The nginx directive or parameter, e.g. `proxy_read_timeout 30s` or `max_fails=3`.
    pub nginx: String,
    /// Where it was written.
    pub at: Place,
}

/// One upstream server as a ringproxy backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedBackend {
    /// The address exactly as written in nginx: what nginx's ring hashes, so the ring identity.
    pub id: String,
    /// Where ringproxy connects: the id, with nginx's default port 80 added when it has none.
    pub address: String,
    /// nginx's `weight=`.
    pub weight: u32,
    /// A `down` server: kept on the ring (nginx keeps its points), to be drained.
    pub down: bool,
    /// Where the `server` line is.
    pub at: Place,
}

/// Something the translation could not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub at: Place,
    /// What could not be carried over, and what to do.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Why no translation could be made at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration does not parse.
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `--upstream NAME` names no upstream.
    #[error("no upstream named {name:?}; upstreams found: {}", list(found))]
    UpstreamNotFound {
        /// The name asked for.
        name: String,
        /// The upstreams there are.
        found: Vec<String>,
    },
    #[error(
        "no upstream uses \"hash ... consistent\"; upstreams found: {}; name one with --upstream",
        list(found)
    )]
    /// No upstream uses `hash ... consistent`.
    NoConsistentUpstream {
        /// The upstreams there are.
        found: Vec<String>,
    },
    #[error(
        "several upstreams use \"hash ... consistent\": {}; pick one with --upstream",
        list(found)
    )]
    /// Several do; `--upstream` must pick one.
    Ambiguous {
        /// Those that do.
        found: Vec<String>,
    },
    /// The upstream has no servers.
    #[error("upstream {upstream:?} has no servers to translate")]
    NoServers {
        /// Its name.
        upstream: String,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

impl Translation {
    /// Whether something could not be translated (see [`Translation::warnings`]).
    pub fn is_partial(&self) -> bool {
        !self.warnings.is_empty()
    }
}

/// Reads the nginx configuration `main_file` (and its includes) and translates the upstream
/// named `upstream`, or else the one upstream using `hash ... consistent`.
pub fn translate(main_file: &Path, upstream: Option<&str>) -> Result<Translation, ImportError> {
    let tree = parse::parse_main(main_file)?;
    translate::translate(main_file, &tree, upstream)
}
