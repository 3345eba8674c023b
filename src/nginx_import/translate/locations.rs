//! The `location`s (and their `server` and `http`) that `proxy_pass` to the upstream: the
//! proxy timeouts in effect there, and warnings for the other `proxy_*` settings.

use std::time::Duration;

use super::time::parse_time;
use super::{place, warn, OTHER_PROTOCOLS};
use crate::nginx_import::parse::Directive;
use crate::nginx_import::{Place, Setting, Translation};

/// The proxy settings in effect at some level (http → server → location).
#[derive(Clone, Default)]
struct Inherited {
    connect: Option<Setting<Duration>>,
    read: Option<Setting<Duration>>,
}

/// Finds every `proxy_pass` to the upstream and maps the timeouts in effect there.
pub(super) fn read_locations(tree: &[Directive], upstream: &str, t: &mut Translation) {
    let mut found: Vec<(Inherited, Place)> = Vec::new();
    walk(tree, &Inherited::default(), upstream, t, &mut found);
    let Some((first, _)) = found.first().cloned() else {
        let at = t.upstream_at.clone();
        warn(
            t,
            at,
            format!("no proxy_pass to http://{upstream} found: proxy timeouts are not translated"),
        );
        return;
    };
    let value = |s: &Option<Setting<Duration>>| s.as_ref().map(|s| s.value);
    for (other, at) in &found[1..] {
        if value(&other.connect) != value(&first.connect)
            || value(&other.read) != value(&first.read)
        {
            warn(
                t,
                at.clone(),
                "this proxy_pass has other timeouts than the first one to the upstream: using the \
                 first's",
            );
        }
    }
    t.connect_timeout = first.connect;
    t.request_timeout = first.read;
}

fn walk(
    level: &[Directive],
    outer: &Inherited,
    upstream: &str,
    t: &mut Translation,
    found: &mut Vec<(Inherited, Place)>,
) {
    // Settings apply to their whole level, wherever in it they are written.
    let mut here = outer.clone();
    for d in level {
        let timeout = |d: &Directive, t: &mut Translation| {
            let v = d.arg(0)?;
            match parse_time(v, false) {
                Some(value) if !value.is_zero() => Some(Setting {
                    value,
                    nginx: format!("{} {v}", d.name),
                    at: place(d),
                }),
                _ => {
                    warn(t, place(d), format!("{} {v:?} is not translated", d.name));
                    None
                }
            }
        };
        match d.name.as_str() {
            "proxy_connect_timeout" => here.connect = timeout(d, t).or(here.connect),
            "proxy_read_timeout" => here.read = timeout(d, t).or(here.read),
            _ => {}
        }
    }
    let passes = level
        .iter()
        .any(|d| d.name == "proxy_pass" && passes_to(d, upstream));
    if passes {
        let at = level
            .iter()
            .find(|d| d.name == "proxy_pass")
            .map_or_else(|| t.upstream_at.clone(), place);
        found.push((here.clone(), at));
        check_location(level, t);
    }
    for d in level {
        if d.block.is_some() && !OTHER_PROTOCOLS.contains(&d.name.as_str()) && d.name != "upstream"
        {
            walk(d.children(), &here, upstream, t, found);
        }
    }
}

/// Whether `proxy_pass` sends to the upstream: `http://NAME` or `http://NAME/...`
/// (case-insensitive, no port, as nginx matches upstream names).
fn passes_to(d: &Directive, upstream: &str) -> bool {
    let Some(url) = d.arg(0) else {
        return false;
    };
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    host == upstream.to_ascii_lowercase()
}

/// Warnings for the other `proxy_*` settings where the upstream is used.
fn check_location(level: &[Directive], t: &mut Translation) {
    for d in level {
        let args: Vec<&str> = d.args.iter().map(|w| w.text.as_str()).collect();
        match (d.name.as_str(), args.as_slice()) {
            ("proxy_pass", [url]) if url.to_ascii_lowercase().starts_with("https://") => warn(
                t,
                place(d),
                "proxy_pass over https: ringproxy speaks plain HTTP to backends",
            ),
            ("proxy_pass", [url]) if url.splitn(4, '/').nth(3).is_some_and(|p| !p.is_empty()) => {
                warn(
                    t,
                    place(d),
                    format!("proxy_pass {url} rewrites the URI; ringproxy forwards it unchanged"),
                );
            }
            ("proxy_pass" | "proxy_connect_timeout" | "proxy_read_timeout", _) => {}
            // ringproxy already talks HTTP/1.1 with keep-alive to backends.
            ("proxy_http_version", ["1.1"]) => {}
            ("proxy_set_header", [name, ""]) if name.eq_ignore_ascii_case("connection") => {}
            (name, _) if name.starts_with("proxy_") => {
                let text = std::iter::once(name)
                    .chain(args.iter().copied())
                    .collect::<Vec<_>>();
                warn(
                    t,
                    place(d),
                    format!("\"{}\" is not translated", text.join(" ")),
                );
            }
            _ => {}
        }
    }
}
