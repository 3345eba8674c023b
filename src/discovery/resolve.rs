//! One discovery round: ask the name server about a [`Target`] and turn the answer into members.
//! The resolver is hickory-resolver's (no hand-written DNS client); this file only picks its
//! options and decides which outcomes count as a set and which as an error (see the module doc).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use super::members::{collect, srv_weight, usable_srv};
use super::{DiscoveryError, Found, ResolverSettings, Target};

/// The resolver discovery uses: hickory's, on tokio. Build it with [`resolver`].
pub type Resolver = hickory_resolver::TokioResolver;

/// A whole [`resolve`] may take this many per-query timeouts: a query and its one retry, twice
/// over for SRV (the SRV query, then its hosts' A/AAAA queries).
pub const RESOLVE_BUDGET: u32 = 4;

/// Retries after a failed query (hickory's `attempts`): one, so a lost UDP packet doesn't cost
/// a round, without letting a dead server hold a round for long.
const RETRIES: usize = 1;

/// SRV hosts resolved at once. hickory rejects requests past 32 in flight per connection
/// (`max_active_requests`), and each host is two queries.
const SRV_HOST_CONCURRENCY: usize = 8;

/// Builds the resolver for `settings`: the given name servers (UDP, TCP when truncated) or,
/// when there are none, the system's `/etc/resolv.conf`. Caching is off: see the module doc.
/// Its lookups run their I/O on the tokio runtime they are awaited on (any flavour).
pub fn resolver(settings: &ResolverSettings) -> Result<Resolver, DiscoveryError> {
    if settings.timeout.is_zero() {
        return Err(DiscoveryError::Invalid(
            "the discovery resolver timeout must be more than zero".into(),
        ));
    }
    let mut builder = if settings.nameservers.is_empty() {
        Resolver::builder_tokio().map_err(|e| {
            DiscoveryError::Failed(format!(
                "can't read the system DNS configuration (/etc/resolv.conf): {e}"
            ))
        })?
    } else {
        let servers = settings
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        // `from_name_servers`: no domain, no search list. The operator named the server that
        // knows the answer; neither search suffixes nor /etc/hosts should get a say.
        let mut builder = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        );
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder
    };
    let options = builder.options_mut();
    options.timeout = settings.timeout;
    options.attempts = RETRIES;
    // No cache: every round must see the name server's current answer, whatever the TTL.
    options.cache_size = 0;
    options.positive_min_ttl = None;
    options.negative_min_ttl = None;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    builder
        .build()
        .map_err(|e| DiscoveryError::Failed(format!("can't build the DNS resolver: {e}")))
}

/// Resolves `target` once: its members sorted by id, or why there is no set. Never an empty
/// `Ok`: nothing to route to is [`DiscoveryError::Empty`]. Bounded by [`RESOLVE_BUDGET`] times
/// the resolver's per-query timeout.
pub async fn resolve(resolver: &Resolver, target: &Target) -> Result<Vec<Found>, DiscoveryError> {
    target.validate()?;
    let budget = resolver.options().timeout.saturating_mul(RESOLVE_BUDGET);
    match tokio::time::timeout(budget, resolve_unbounded(resolver, target)).await {
        Ok(result) => result,
        Err(_) => Err(DiscoveryError::Timeout(format!(
            "resolving {} took longer than {}",
            target.dns_name(),
            humantime::format_duration(budget)
        ))),
    }
}

async fn resolve_unbounded(
    resolver: &Resolver,
    target: &Target,
) -> Result<Vec<Found>, DiscoveryError> {
    match (&target.name, &target.srv, target.port) {
        (Some(name), None, Some(port)) => {
            let ips = host_addresses(resolver, &parse_name(name)?).await?;
            Ok(collect(ips.into_iter().map(|ip| (ip, port, target.weight))))
        }
        (None, Some(srv), None) => resolve_srv(resolver, &parse_name(srv)?).await,
        // `validate` has ruled this out; an error rather than a panic all the same.
        _ => Err(DiscoveryError::Invalid(format!(
            "{}: set `name` + `port` or `srv`",
            target.dns_name()
        ))),
    }
}

fn parse_name(name: &str) -> Result<Name, DiscoveryError> {
    Name::from_ascii(name.trim())
        .map_err(|e| DiscoveryError::Invalid(format!("{name:?} is not a DNS name: {e}")))
}

/// SRV records → their hosts' addresses. A host that no longer resolves (NXDOMAIN, no
/// records) is skipped: its record is dangling, which happens for a moment whenever a member
/// goes away. A host whose lookup *fails* fails the round, or one slow answer would drop it.
async fn resolve_srv(resolver: &Resolver, srv: &Name) -> Result<Vec<Found>, DiscoveryError> {
    let records: Vec<SRV> = match query(resolver, srv, RecordType::SRV).await? {
        Answer::Nothing(why) => {
            return Err(DiscoveryError::Empty(format!(
                "{srv} has no SRV records ({why})"
            )))
        }
        Answer::Records(data) => data
            .into_iter()
            .filter_map(|data| match data {
                RData::SRV(record) => Some(record),
                _ => None,
            })
            .collect(),
    };
    let usable = usable_srv(&records);
    if usable.is_empty() {
        return Err(DiscoveryError::Empty(format!(
            "every SRV record of {srv} has target \".\" (service not offered)"
        )));
    }

    let mut hosts: Vec<Name> = usable.iter().map(|r| r.target.clone()).collect();
    hosts.sort();
    hosts.dedup();
    let answers: Vec<(Name, Result<Vec<IpAddr>, DiscoveryError>)> = stream::iter(hosts)
        .map(|host| async move {
            let addresses = host_addresses(resolver, &host).await;
            (host, addresses)
        })
        .buffer_unordered(SRV_HOST_CONCURRENCY)
        .collect()
        .await;

    let mut addresses: HashMap<Name, Vec<IpAddr>> = HashMap::new();
    for (host, result) in answers {
        match result {
            Ok(ips) => {
                addresses.insert(host, ips);
            }
            Err(DiscoveryError::Empty(why)) => {
                tracing::debug!(srv = %srv, host = %host, "SRV target skipped: {why}");
            }
            Err(e) => return Err(in_context(e, &format!("SRV {srv}"))),
        }
    }
    let found = collect(usable.iter().flat_map(|record| {
        let ips = addresses.get(&record.target).map_or(&[][..], Vec::as_slice);
        ips.iter()
            .map(|ip| (*ip, record.port, srv_weight(record.weight)))
    }));
    if found.is_empty() {
        return Err(DiscoveryError::Empty(format!(
            "no SRV target of {srv} resolves to an address"
        )));
    }
    Ok(found)
}

/// A and AAAA of `name`, asked at once. Either query failing fails the lookup (see the module
/// doc: half an answer would move keys); both empty is [`DiscoveryError::Empty`].
async fn host_addresses(resolver: &Resolver, name: &Name) -> Result<Vec<IpAddr>, DiscoveryError> {
    let (a, aaaa) = tokio::join!(
        query(resolver, name, RecordType::A),
        query(resolver, name, RecordType::AAAA)
    );
    let (a, aaaa) = (a?, aaaa?);
    if let (Answer::Nothing(why_a), Answer::Nothing(why_aaaa)) = (&a, &aaaa) {
        return Err(DiscoveryError::Empty(format!(
            "{name} has no A/AAAA records (A: {why_a}, AAAA: {why_aaaa})"
        )));
    }
    let mut ips = Vec::new();
    for answer in [a, aaaa] {
        if let Answer::Records(data) = answer {
            ips.extend(data.into_iter().filter_map(|data| match data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            }));
        }
    }
    Ok(ips)
}

/// What one query came back with, when it came back.
enum Answer {
    /// Records of the asked type (CNAMEs on the way are dropped: only the final data counts).
    Records(Vec<RData>),
    /// A valid "nothing here": NXDOMAIN or NOERROR without records of that type.
    Nothing(&'static str),
}

async fn query(
    resolver: &Resolver,
    name: &Name,
    record_type: RecordType,
) -> Result<Answer, DiscoveryError> {
    match resolver.lookup(name.clone(), record_type).await {
        Ok(lookup) => {
            let data: Vec<RData> = lookup
                .answers()
                .iter()
                .filter(|record| record.record_type() == record_type)
                .map(|record| record.data.clone())
                .collect();
            if data.is_empty() {
                Ok(Answer::Nothing("no records"))
            } else {
                Ok(Answer::Records(data))
            }
        }
        Err(e) if e.is_nx_domain() => Ok(Answer::Nothing("NXDOMAIN")),
        Err(e) if e.is_no_records_found() => Ok(Answer::Nothing("no records")),
        Err(NetError::Timeout) => Err(DiscoveryError::Timeout(format!(
            "{record_type} query for {name} timed out"
        ))),
        Err(e) => Err(DiscoveryError::Failed(format!(
            "{record_type} query for {name} failed: {e}"
        ))),
    }
}

/// Prefixes an error's message with where it happened, keeping its kind.
fn in_context(error: DiscoveryError, context: &str) -> DiscoveryError {
    match error {
        DiscoveryError::Invalid(m) => DiscoveryError::Invalid(format!("{context}: {m}")),
        DiscoveryError::Empty(m) => DiscoveryError::Empty(format!("{context}: {m}")),
        DiscoveryError::Failed(m) => DiscoveryError::Failed(format!("{context}: {m}")),
        DiscoveryError::Timeout(m) => DiscoveryError::Timeout(format!("{context}: {m}")),
    }
}
