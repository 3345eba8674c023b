//! Configuration, in one home: the TOML file's raw serde shape ([`raw`]), turned section by
//! section into validated values by `TryFrom`, all with one set of field helpers. Every error
//! names the field and says what to change; unknown fields are errors so a typo never silently
//! falls back to a default. The admin API validates backends with the same rules.
//!
//! - `fields.rs`: [`ConfigError`] and the duration / range / address helpers.
//! - `raw.rs`: the file's shape.
//! - `proxy.rs`, `health.rs`, `affinity.rs`, `balance.rs`, `backends.rs`, `discovery.rs`: one
//!   section each.
//! - `file.rs`: the whole [`Config`].

mod affinity;
mod backends;
mod balance;
mod discovery;
mod fields;
mod file;
mod health;
mod proxy;
mod raw;

pub use backends::{validate_address, validate_id, validate_weight, BackendConfig};
pub use balance::{BalanceConfig, Spread};
pub use fields::ConfigError;
pub use file::Config;
pub use health::{ActiveConfig, HealthConfig};
pub use proxy::{AdminConfig, Http1, Io, ProxyConfig, DEFAULT_VNODES};

#[cfg(test)]
mod tests;
