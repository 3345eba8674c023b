//! The one set of helpers every config section validates with: the error type, and the
//! parsers for durations, integer ranges and socket addresses. Every error names its field.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// A configuration problem: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not valid TOML, or has the wrong shape (unknown field, wrong type).
    #[error("{0}")]
    Parse(String),
    /// A field's value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, e.g. `backends[1].weight`.
        field: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// toml's messages carry a multi-line source excerpt; keep it but put the gist first.
pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(_) => format!("invalid config: {msg}\n{e}"),
        None => format!("invalid config: {msg}"),
    }
}

/// A duration such as `"500ms"` or `"10s"`, at least 1 ms (a zero timeout or period would
/// fail every request or spin), or `default` when absent.
pub(crate) fn duration(
    field: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let d = humantime::parse_duration(&v).map_err(|e| {
        invalid(
            field,
            format!("{v:?} is not a duration ({e}); write e.g. \"500ms\" or \"10s\""),
        )
    })?;
    if d < Duration::from_millis(1) {
        return Err(invalid(field, "must be at least 1ms"));
    }
    Ok(d)
}

/// An integer within `range`, or `default` when absent.
pub(crate) fn int_in<T: TryFrom<i64>>(
    field: &str,
    value: Option<i64>,
    range: RangeInclusive<i64>,
    default: T,
) -> Result<T, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    if !range.contains(&v) {
        return Err(invalid(
            field,
            format!(
                "{v} is out of range; use {} to {}",
                range.start(),
                range.end()
            ),
        ));
    }
    T::try_from(v).map_err(|_| invalid(field, format!("{v} is out of range")))
}

/// An `IP:port` to listen on, or `default` when absent.
pub(crate) fn socket_addr(
    field: &str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    v.parse().map_err(|_| {
        invalid(
            field,
            format!("{v:?} is not an IP:port socket address (e.g. \"127.0.0.1:9090\")"),
        )
    })
}
