//! Why a discovery round produced no set. Every message names the DNS name it is about, because
//! the caller logs it as-is and an operator with ten `[[discovery]]` entries needs to know which.

/// A resolve that must not replace the last good set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The target or the resolver settings can't be used (config validation should have said
    /// so first); retrying won't help.
    #[error("invalid discovery target: {0}")]
    Invalid(String),
    /// The name answered, but with nothing to route to: NXDOMAIN, NOERROR without records, or
    /// SRV records that all point nowhere.
    #[error("{0}")]
    Empty(String),
    /// The lookup failed: SERVFAIL, REFUSED, a network error, a malformed answer.
    #[error("{0}")]
    Failed(String),
    /// No answer in time.
    #[error("{0}")]
    Timeout(String),
}

impl DiscoveryError {
    /// A short fixed label for metrics (`result="empty"`, ...), so the caller counts without
    /// parsing messages.
    pub fn label(&self) -> &'static str {
        match self {
            DiscoveryError::Invalid(_) => "invalid",
            DiscoveryError::Empty(_) => "empty",
            DiscoveryError::Failed(_) => "failed",
            DiscoveryError::Timeout(_) => "timeout",
        }
    }
}
