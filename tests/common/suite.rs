//! The `[proxy]` settings every test config gets, so the whole suite runs on one of the
//! proxy's paths: `RINGPROXY_TEST_HTTP1=relay|hyper` picks the HTTP/1 server path and
//! `RINGPROXY_TEST_IO=io_uring|epoll` the relay's I/O (CI runs the suite on the defaults, then
//! with `hyper`, the escape hatch, then with `epoll`, what the relay runs on where io_uring is
//! refused). Unset, configs are left as written and the proxy's defaults apply. A config that
//! sets the key itself is never changed.

use std::path::Path;

/// A `[proxy]` key the whole suite can be run with.
struct Knob {
    /// The environment variable that sets it.
    env: &'static str,
    key: &'static str,
    /// The values the proxy knows.
    values: &'static [&'static str],
}

const KNOBS: [Knob; 2] = [
    Knob {
        env: "RINGPROXY_TEST_HTTP1",
        key: "http1",
        values: &["relay", "hyper"],
    },
    Knob {
        env: "RINGPROXY_TEST_IO",
        key: "io",
        values: &["io_uring", "epoll"],
    },
];

/// The value `knob`'s variable asks for, if any; panics on a value the proxy does not know,
/// so a typo in CI cannot silently test the default twice.
fn wanted(knob: &Knob) -> Option<&'static str> {
    match std::env::var(knob.env) {
        Err(std::env::VarError::NotPresent) => None,
        Ok(v) if v.is_empty() => None,
        Ok(v) => match knob.values.iter().find(|&&known| known == v) {
            Some(known) => Some(known),
            None => panic!(
                "{}={v:?}: use one of {:?} (or leave it unset)",
                knob.env, knob.values
            ),
        },
        Err(e) => panic!("{}: {e}", knob.env),
    }
}

/// `config` with the keys the suite's variables ask for (see [`with_proxy_key`]).
pub fn with_suite_settings(config: &str) -> String {
    KNOBS
        .iter()
        .fold(config.to_string(), |config, knob| match wanted(knob) {
            Some(value) => with_proxy_key(&config, knob.key, value),
            None => config,
        })
}

/// `config` with `<key> = "<value>"` in its `[proxy]` table: the line goes right after the
/// first `[proxy]` header, or a `[proxy]` table is added at the end when there is none.
/// Unchanged when the config already sets `key`.
pub fn with_proxy_key(config: &str, key: &str, value: &str) -> String {
    let sets_key = config.lines().any(|line| {
        let line = line.trim_start();
        line.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    if sets_key {
        return config.to_string();
    }
    let line = format!("{key} = \"{value}\"\n");
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

/// Applies [`with_suite_settings`] to the config file at `path` in place (for a process or a
/// file-backed proxy about to read it).
pub fn apply_suite_settings_to_file(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read config {}: {e}", path.display()));
    let next = with_suite_settings(&text);
    if next != text {
        std::fs::write(path, next)
            .unwrap_or_else(|e| panic!("write config {}: {e}", path.display()));
    }
}

/// Writes a config file (e.g. before `POST /reload`), with [`with_suite_settings`] applied,
/// so a reload keeps the paths the process started on.
pub fn write_config(path: &Path, text: &str) {
    std::fs::write(path, with_suite_settings(text))
        .unwrap_or_else(|e| panic!("write config {}: {e}", path.display()));
}
