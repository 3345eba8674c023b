//! From the directive tree to a [`Translation`]: pick the upstream, read its servers and its
//! `hash` ([`upstream`]), then the proxy timeouts in effect where `proxy_pass` sends requests
//! to it ([`locations`]).

use std::path::Path;

use super::parse::Directive;
use super::{ImportError, Place, Translation, Warning};

mod locations;
mod time;
mod upstream;

#[cfg(test)]
pub(super) use time::parse_time;
#[cfg(test)]
pub(super) use upstream::with_default_port;

/// Blocks whose `upstream`s are not HTTP upstreams.
pub(super) const OTHER_PROTOCOLS: [&str; 2] = ["stream", "mail"];

pub(super) fn translate(
    main_file: &Path,
    tree: &[Directive],
    wanted: Option<&str>,
) -> Result<Translation, ImportError> {
    let mut upstreams = Vec::new();
    collect_upstreams(tree, &mut upstreams);
    let names = || {
        upstreams
            .iter()
            .map(|u| upstream_name(u))
            .collect::<Vec<_>>()
    };
    let upstream = match wanted {
        Some(name) => *upstreams
            .iter()
            .find(|u| upstream_name(u) == name)
            .ok_or_else(|| ImportError::UpstreamNotFound {
                name: name.to_string(),
                found: names(),
            })?,
        None => {
            let consistent: Vec<&Directive> = upstreams
                .iter()
                .copied()
                .filter(|u| {
                    u.children()
                        .iter()
                        .any(|d| d.name == "hash" && d.arg(1) == Some("consistent"))
                })
                .collect();
            match consistent.as_slice() {
                [one] => *one,
                [] => return Err(ImportError::NoConsistentUpstream { found: names() }),
                many => {
                    return Err(ImportError::Ambiguous {
                        found: many.iter().map(|u| upstream_name(u)).collect(),
                    })
                }
            }
        }
    };
    let name = upstream_name(upstream);
    let mut t = Translation {
        main_file: main_file.to_path_buf(),
        upstream: name.clone(),
        upstream_at: place(upstream),
        hash: None,
        consistent: false,
        key: None,
        backends: Vec::new(),
        connect_timeout: None,
        request_timeout: None,
        fail_threshold: None,
        eject_for: None,
        warnings: Vec::new(),
    };
    let health = upstream::read_upstream(upstream, &mut t)?;
    if t.hash.is_none() {
        let at = t.upstream_at.clone();
        warn(
            &mut t,
            at,
            format!(
                "upstream {name} has no \"hash\": nginx does not hash keys for it, so there is no \
                 key to keep; pick key sources in [affinity]"
            ),
        );
    }
    if t.backends.is_empty() {
        return Err(ImportError::NoServers { upstream: name });
    }
    upstream::map_health(&health, &mut t);
    locations::read_locations(tree, &name, &mut t);
    t.warnings
        .sort_by(|a, b| (&a.at.file, a.at.line).cmp(&(&b.at.file, b.at.line)));
    Ok(t)
}

fn upstream_name(u: &Directive) -> String {
    u.arg(0).unwrap_or_default().to_string()
}

pub(super) fn place(d: &Directive) -> Place {
    Place {
        file: d.file.to_path_buf(),
        line: d.line,
    }
}

pub(super) fn warn(t: &mut Translation, at: Place, message: impl Into<String>) {
    t.warnings.push(Warning {
        at,
        message: message.into(),
    });
}

pub(super) fn invalid(d: &Directive, line: usize, message: String) -> ImportError {
    ImportError::Syntax {
        file: d.file.to_path_buf(),
        line,
        message,
    }
}

/// Every `upstream NAME { }` outside `stream {}` and `mail {}`, at any depth (the main file
/// may be a snippet without `http {}`).
fn collect_upstreams<'a>(tree: &'a [Directive], out: &mut Vec<&'a Directive>) {
    for d in tree {
        if d.name == "upstream" && d.block.is_some() && d.args.len() == 1 {
            out.push(d);
        } else if !OTHER_PROTOCOLS.contains(&d.name.as_str()) {
            collect_upstreams(d.children(), out);
        }
    }
}
