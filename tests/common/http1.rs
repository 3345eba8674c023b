//! The HTTP/1 server path every test config asks for: `RINGPROXY_TEST_HTTP1=relay|hyper`
//! makes the whole suite run on one path (CI runs it once on the default and once with
//! `hyper`, the escape hatch). Unset, configs are left as written and the proxy's default
//! applies. A config that sets `http1` itself is never changed.

use std::path::Path;

/// The environment variable that picks the path for the whole suite.
pub const HTTP1_ENV: &str = "RINGPROXY_TEST_HTTP1";

/// The path asked for by [`HTTP1_ENV`], if any; panics on a value the proxy does not know,
/// so a typo in CI cannot silently test the default twice.
pub fn http1_override() -> Option<&'static str> {
    match std::env::var(HTTP1_ENV) {
        Err(std::env::VarError::NotPresent) => None,
        Ok(v) if v == "relay" => Some("relay"),
        Ok(v) if v == "hyper" => Some("hyper"),
        Ok(v) if v.is_empty() => None,
        other => panic!("{HTTP1_ENV}={other:?}: use \"relay\" or \"hyper\" (or leave it unset)"),
    }
}

/// `config` with `http1 = "<mode>"` in its `[proxy]` table when [`HTTP1_ENV`] asks for a
/// mode: the line goes right after the first `[proxy]` header, or a `[proxy]` table is added
/// at the end when there is none. Unchanged when the variable is unset or the config already
/// sets `http1`.
pub fn with_http1(config: &str) -> String {
    match http1_override() {
        Some(mode) => with_http1_mode(config, mode),
        None => config.to_string(),
    }
}

/// [`with_http1`] for an explicit mode.
pub fn with_http1_mode(config: &str, mode: &str) -> String {
    let sets_http1 = config.lines().any(|line| {
        let line = line.trim_start();
        line.strip_prefix("http1")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    if sets_http1 {
        return config.to_string();
    }
    let line = format!("http1 = \"{mode}\"\n");
    let mut out = String::with_capacity(config.len() + line.len() + 10);
    let mut inserted = false;
    for piece in config.split_inclusive('\n') {
        out.push_str(piece);
        if !inserted && is_proxy_header(piece) {
            if !piece.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&line);
            inserted = true;
        }
    }
    if !inserted {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("[proxy]\n");
        out.push_str(&line);
    }
    out
}

/// `[proxy]` alone on its line (spaces and a comment allowed).
fn is_proxy_header(line: &str) -> bool {
    let line = line.trim();
    let line = line
        .split_once('#')
        .map_or(line, |(head, _)| head)
        .trim_end();
    line.strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .is_some_and(|name| name.trim() == "proxy")
}

/// Applies [`with_http1`] to the config file at `path` in place (for a process or a
/// file-backed proxy about to read it).
pub fn apply_http1_to_file(path: &Path) {
    if http1_override().is_none() {
        return;
    }
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read config {}: {e}", path.display()));
    let next = with_http1(&text);
    if next != text {
        std::fs::write(path, next)
            .unwrap_or_else(|e| panic!("write config {}: {e}", path.display()));
    }
}

/// Writes a config file (e.g. before `POST /reload`), with [`with_http1`] applied, so a
/// reload keeps the path the process started on.
pub fn write_config(path: &Path, text: &str) {
    std::fs::write(path, with_http1(text))
        .unwrap_or_else(|e| panic!("write config {}: {e}", path.display()));
}
