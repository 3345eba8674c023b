//! `[[backends]]`, and the rules every backend obeys wherever it comes from (config file or
//! admin API): id, address and weight validation.

use super::fields::{invalid, ConfigError};
use super::raw::RawBackend;

/// One configured backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Ring identity: what is hashed, so an address change keeps the backend's keys.
    pub id: String,
    /// `host:port` to connect to.
    pub address: String,
    /// Units of `vnodes` on the ring.
    pub weight: u32,
}

/// Validates the `[[backends]]` list: each entry, and ids unique across it. It may be left out
/// only when discovery finds the backends.
pub(crate) fn backends(
    raw: Option<Vec<RawBackend>>,
    discovery: bool,
) -> Result<Vec<BackendConfig>, ConfigError> {
    let raw = match raw {
        Some(list) => list,
        None if discovery => Vec::new(),
        None => return Err(invalid("backends", "missing; add [[backends]] tables or [[discovery]], or `backends = []` to start empty and join through the admin API")),
    };
    let mut backends: Vec<BackendConfig> = Vec::with_capacity(raw.len());
    for (i, b) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("backends[{i}].{name}");
        let id = b.id.ok_or_else(|| invalid(field("id"), "missing"))?;
        validate_id(&id).map_err(|m| invalid(field("id"), m))?;
        if backends.iter().any(|x| x.id == id) {
            return Err(invalid(
                field("id"),
                format!("duplicate id {id:?}; ids must be unique"),
            ));
        }
        let address = b
            .address
            .ok_or_else(|| invalid(field("address"), "missing"))?;
        validate_address(&address).map_err(|m| invalid(field("address"), m))?;
        let weight =
            validate_weight(b.weight.unwrap_or(1)).map_err(|m| invalid(field("weight"), m))?;
        backends.push(BackendConfig {
            id,
            address,
            weight,
        });
    }
    Ok(backends)
}

/// Validates a backend address: `host:port`, where host is an IP or a DNS name.
pub fn validate_address(value: &str) -> Result<(), String> {
    let authority: http::uri::Authority = value
        .parse()
        .map_err(|_| format!("{value:?} is not a host:port address"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{value:?} must not contain user info"));
    }
    if authority.host().is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    match authority.port_u16() {
        Some(0) => Err(format!("{value:?} has port 0")),
        Some(_) => Ok(()),
        None => Err(format!("{value:?} needs a port (host:port)")),
    }
}

/// Validates a backend weight given as an integer from JSON or TOML.
pub fn validate_weight(weight: i64) -> Result<u32, String> {
    if weight < 1 {
        return Err(format!(
            "{weight} is not allowed; weights must be at least 1"
        ));
    }
    if weight > 10_000 {
        return Err(format!("{weight} is too large; weights go up to 10000"));
    }
    Ok(weight as u32)
}

/// The characters an id may use besides letters and digits (any script).
pub const ID_PUNCTUATION: &str = "-_.:[]@";

/// Validates a backend id: 1 to 128 bytes of letters and digits (any script) and
/// [`ID_PUNCTUATION`], and not `.` or `..`. Ids are URL path segments in the admin API, so
/// nothing in them needs quoting beyond percent-encoding non-ASCII letters.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 128 {
        return Err("must be at most 128 bytes".into());
    }
    if id == "." || id == ".." {
        return Err(format!(
            "{id:?} is not allowed (it is a relative path segment)"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !c.is_alphanumeric() && !ID_PUNCTUATION.contains(*c))
    {
        return Err(format!(
            "{id:?} contains {c:?}; ids may use letters, digits and {ID_PUNCTUATION}"
        ));
    }
    Ok(())
}
