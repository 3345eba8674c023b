//! The `[affinity]` section: which request parts make the key, and what to do without one.

use std::str::FromStr;

use http::header::HeaderName;

use super::fields::{invalid, ConfigError};
use super::raw::RawAffinity;
use crate::affinity::{AffinityConfig, OnMissing, Source};

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Source, String> {
        let (kind, name) = match s.split_once(':') {
            Some((k, n)) => (k, Some(n)),
            None => (s, None),
        };
        let need_name = |what: &str| match name {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => Err(format!(
                "{s:?}: {kind} needs a name, e.g. \"{kind}:{what}\""
            )),
        };
        match kind {
            "header" => {
                let n = need_name("x-user-id")?;
                HeaderName::from_bytes(n.as_bytes())
                    .map(Source::Header)
                    .map_err(|_| format!("{s:?}: {n:?} is not a valid header name"))
            }
            "cookie" => Ok(Source::Cookie(need_name("session")?)),
            "query" => Ok(Source::Query(need_name("uid")?)),
            "template" => {
                let expr = need_name("$host$request_uri")?;
                expr.parse()
                    .map(|t| Source::Template(Box::new(t)))
                    .map_err(|e| format!("{s:?}: {e}"))
            }
            "path" | "source_ip" | "uri" | "host" if name.is_some() => {
                Err(format!("{s:?}: {kind} takes no name; write \"{kind}\""))
            }
            "path" => Ok(Source::Path),
            "source_ip" => Ok(Source::SourceIp),
            "uri" => Ok(Source::Uri),
            "host" => Ok(Source::Host),
            _ => Err(format!(
                "{s:?}: unknown source kind {kind:?}; use header:NAME, cookie:NAME, query:NAME, path, uri, host, source_ip or template:EXPR"
            )),
        }
    }
}

impl TryFrom<RawAffinity> for AffinityConfig {
    type Error = ConfigError;

    fn try_from(raw: RawAffinity) -> Result<AffinityConfig, ConfigError> {
        let keys = raw
            .key
            .unwrap_or_else(|| vec!["header:x-user-id".to_string()]);
        if keys.is_empty() {
            return Err(invalid(
                "affinity.key",
                "must list at least one source, e.g. [\"header:x-user-id\"]",
            ));
        }
        let sources = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                k.parse()
                    .map_err(|m| invalid(format!("affinity.key[{i}]"), m))
            })
            .collect::<Result<Vec<Source>, _>>()?;
        let on_missing = match raw.on_missing.as_deref() {
            None | Some("random") => OnMissing::Random,
            Some("reject") => OnMissing::Reject,
            Some(other) => {
                return Err(invalid(
                    "affinity.on_missing",
                    format!("{other:?} is not one of \"random\", \"reject\""),
                ))
            }
        };
        Ok(AffinityConfig {
            sources,
            on_missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sources_are_rejected_with_a_reason() {
        for bad in [
            "header",
            "header:",
            "cookie:",
            "query",
            "path:x",
            "ip",
            "header:bad header",
        ] {
            let e = bad.parse::<Source>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(
            "source_ip".parse::<Source>().unwrap().to_string(),
            "source_ip"
        );
    }
}
