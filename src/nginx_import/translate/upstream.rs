//! The upstream block: its servers (in listing order, with weights and health parameters)
//! and its `hash` directive.

use std::time::Duration;

use super::time::parse_time;
use super::{invalid, place, warn};
use crate::affinity_template::Template;
use crate::nginx_import::parse::Directive;
use crate::nginx_import::{ImportError, ImportedBackend, Place, Setting, Translation};

/// Per-server `max_fails` / `fail_timeout`, as written (for [`map_health`]).
#[derive(Default)]
pub(super) struct Health {
    max_fails: Vec<Setting<u32>>,
    fail_timeout: Vec<Setting<Duration>>,
}

pub(super) fn read_upstream(
    upstream: &Directive,
    t: &mut Translation,
) -> Result<Health, ImportError> {
    let mut health = Health::default();
    let mut balancer: Option<String> = None;
    for d in upstream.children() {
        match d.name.as_str() {
            "hash" => read_hash(d, t, &mut balancer),
            "server" => read_server(d, t, &mut health)?,
            // Connection reuse and shared-memory state: ringproxy pools connections itself.
            "keepalive" | "keepalive_timeout" | "keepalive_requests" | "keepalive_time"
            | "zone" => {}
            "least_conn" | "ip_hash" | "random" | "least_time" | "sticky" | "ntlm" => {
                if let Some(prev) = &balancer {
                    warn(
                        t,
                        place(d),
                        format!(
                            "\"{}\" replaces the \"{prev}\" balancing before it: in nginx this \
                             upstream does not hash keys consistently; translated as if it did",
                            d.name
                        ),
                    );
                } else {
                    warn(
                        t,
                        place(d),
                        format!("\"{}\" is not translated: ringproxy hashes keys", d.name),
                    );
                }
                balancer = Some(d.name.clone());
            }
            _ => warn(
                t,
                place(d),
                format!("\"{}\" in the upstream is not translated", d.name),
            ),
        }
    }
    Ok(health)
}

fn read_hash(d: &Directive, t: &mut Translation, balancer: &mut Option<String>) {
    if let Some(prev) = balancer {
        warn(
            t,
            place(d),
            format!("\"hash\" replaces the \"{prev}\" balancing before it (as in nginx)"),
        );
    }
    *balancer = Some("hash".to_string());
    let Some(expr) = d.arg(0) else {
        warn(t, place(d), "\"hash\" without a key is not translated");
        return;
    };
    t.consistent = d.arg(1) == Some("consistent") && d.args.len() == 2;
    if !t.consistent {
        let message = match d.arg(1) {
            None => "\"hash\" without \"consistent\" is nginx's modulo hash: ringproxy's ring \
                     (compat = \"nginx\") is the consistent one, so keys will move"
                .to_string(),
            Some(other) => format!("\"hash\" with {other:?} instead of \"consistent\""),
        };
        warn(t, place(d), message);
    }
    t.hash = Some(Setting {
        value: expr.to_string(),
        nginx: format!(
            "hash {expr}{}",
            if t.consistent { " consistent" } else { "" }
        ),
        at: place(d),
    });
    match expr.parse::<Template>() {
        Ok(_) => t.key = Some(expr.to_string()),
        Err(e) => {
            t.key = None;
            warn(
                t,
                place(d),
                format!("the hash key {expr:?} is not translated: {e}"),
            );
        }
    }
}

fn read_server(d: &Directive, t: &mut Translation, health: &mut Health) -> Result<(), ImportError> {
    let Some(address) = d.args.first() else {
        return Err(invalid(d, d.line, "\"server\" needs an address".into()));
    };
    let id = address.text.clone();
    let at = place(d);
    let mut weight = 1u32;
    let (mut backup, mut down) = (false, false);
    for param in &d.args[1..] {
        let p = param.text.as_str();
        let at = Place {
            file: d.file.to_path_buf(),
            line: param.line,
        };
        let number = |value: &str| -> Result<u32, ImportError> {
            value.parse::<u32>().map_err(|_| {
                invalid(
                    d,
                    param.line,
                    format!("invalid parameter {p:?} of server {id}"),
                )
            })
        };
        if let Some(v) = p.strip_prefix("weight=") {
            weight = number(v)?;
            if weight == 0 {
                return Err(invalid(d, param.line, format!("weight=0 for server {id}")));
            }
        } else if let Some(v) = p.strip_prefix("max_fails=") {
            health.max_fails.push(Setting {
                value: number(v)?,
                nginx: p.to_string(),
                at,
            });
        } else if let Some(v) = p.strip_prefix("fail_timeout=") {
            let value = parse_time(v, true).ok_or_else(|| {
                invalid(
                    d,
                    param.line,
                    format!("invalid parameter {p:?} of server {id}"),
                )
            })?;
            health.fail_timeout.push(Setting {
                value,
                nginx: p.to_string(),
                at,
            });
        } else if p == "backup" {
            backup = true;
            warn(
                t,
                at,
                format!(
                    "server {id} is a backup: nginx's consistent hash gives backups no place on \
                     the ring (and refuses \"backup\" after \"hash\"); ringproxy has no backup \
                     servers, so it is left out"
                ),
            );
        } else if p == "down" {
            down = true;
            warn(
                t,
                at,
                format!(
                    "server {id} is down: kept on the ring so no other key moves (nginx keeps its \
                     points too); drain it once ringproxy runs (POST /backends/{id}/drain)"
                ),
            );
        } else if p == "resolve" || p.starts_with("service=") {
            warn(
                t,
                at,
                format!(
                    "{p:?} on server {id} (re-resolving the name at run time) is not translated"
                ),
            );
        } else {
            warn(t, at, format!("{p:?} on server {id} is not translated"));
        }
    }
    if backup {
        return Ok(());
    }
    if id
        .as_bytes()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"unix:"))
    {
        warn(
            t,
            at.clone(),
            format!(
                "server {id} is a unix socket, which ringproxy cannot connect to: give it a TCP \
                 address and keep the id, so its keys stay"
            ),
        );
    }
    // nginx may list one address twice: both get the same points (one set survives), so one
    // backend with the larger weight builds the same ring.
    if let Some(b) = t.backends.iter_mut().find(|b| b.id == id) {
        b.weight = b.weight.max(weight);
        b.down &= down;
        warn(
            t,
            at,
            format!("server {id} is listed twice: merged into one backend (the larger weight)"),
        );
        return Ok(());
    }
    t.backends.push(ImportedBackend {
        address: with_default_port(&id),
        id,
        weight,
        down,
        at,
    });
    Ok(())
}

/// `host:port` for ringproxy: nginx's default port 80 when the address has none.
pub(in crate::nginx_import) fn with_default_port(address: &str) -> String {
    let has_port = match address.rfind(':') {
        Some(i) => !address.starts_with('[') || address[..i].ends_with(']'),
        None => false,
    };
    if has_port || address.to_ascii_lowercase().starts_with("unix:") {
        address.to_string()
    } else {
        format!("{address}:80")
    }
}

/// The first server's setting of a per-server parameter, said to be the one used when the
/// servers differ (`what`: the parameter and ringproxy's one setting; `using`: how the first
/// is shown).
fn agreed<T: Clone + PartialEq>(
    servers: &[Setting<T>],
    what: &str,
    using: impl FnOnce(&Setting<T>) -> String,
    t: &mut Translation,
) -> Option<Setting<T>> {
    let first = servers.first()?.clone();
    if servers.iter().any(|s| s.value != first.value) {
        let message = format!("servers differ in {what}: using {}", using(&first));
        warn(t, first.at.clone(), message);
    }
    Some(first)
}

/// nginx counts failures per server; ringproxy has one setting for all. Map them when the
/// servers agree (or only one value is written), else take the first and say so.
pub(super) fn map_health(health: &Health, t: &mut Translation) {
    let max_fails = agreed(
        &health.max_fails,
        "max_fails; ringproxy has one fail_threshold",
        |s| s.value.to_string(),
        t,
    );
    if let Some(first) = max_fails {
        match first.value {
            0 => warn(
                t,
                first.at.clone(),
                "max_fails=0 turns nginx's failure accounting off; ringproxy always ejects \
                 after fail_threshold failures (default 3)",
            ),
            n => {
                let value = n.min(1000);
                if value != n {
                    warn(
                        t,
                        first.at.clone(),
                        format!("{} is above 1000: using 1000", first.nginx),
                    );
                }
                t.fail_threshold = Some(Setting { value, ..first });
            }
        }
    }
    let fail_timeout = agreed(
        &health.fail_timeout,
        "fail_timeout; ringproxy has one eject_for",
        |s| s.nginx.clone(),
        t,
    );
    if let Some(first) = fail_timeout {
        if first.value.is_zero() {
            warn(t, first.at.clone(), "fail_timeout=0 is not translated");
        } else {
            t.eject_for = Some(first);
        }
    }
}
