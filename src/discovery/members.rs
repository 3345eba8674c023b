//! The pure half of discovery: DNS answers in, ring members out. No I/O, so the rules that
//! decide what the ring looks like (ids, ordering, duplicates, SRV weights and priorities) are
//! tested here without a name server.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::proto::rr::rdata::SRV;

/// One discovered ring member. `id` and `address` are both `"<ip>:<port>"` (`"[ip]:port"` for
/// IPv6): derived from the answer alone, so every replica names the member the same way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    /// Ring identity: `"<ip>:<port>"`.
    pub id: String,
    /// Where to connect: the same as `id`.
    pub address: String,
    /// The target's weight, or the SRV record's.
    pub weight: u32,
}

/// Turns `(ip, port, weight)` triples into members sorted by id, one per id. An address listed
/// twice (two SRV records naming one host, two hosts sharing an address) is one backend: it
/// keeps the larger weight, which does not depend on the order the answers came in.
pub(super) fn collect(addresses: impl IntoIterator<Item = (IpAddr, u16, u32)>) -> Vec<Found> {
    let mut by_id: BTreeMap<String, u32> = BTreeMap::new();
    for (ip, port, weight) in addresses {
        // An IPv4-mapped AAAA (`::ffff:a.b.c.d`, which Docker Desktop's DNS invents next to the
        // A record) is the same host as its IPv4 address: one member, not two.
        let ip = ip.to_canonical();
        // SocketAddr's Display brackets IPv6 and never adds a scope id for (ip, port).
        let id = SocketAddr::new(ip, port).to_string();
        let slot = by_id.entry(id).or_insert(weight);
        *slot = (*slot).max(weight);
    }
    by_id
        .into_iter()
        .map(|(id, weight)| Found {
            address: id.clone(),
            id,
            weight,
        })
        .collect()
}

/// SRV weight 0 means "no preference" (RFC 2782), not "no traffic": it counts as 1, the
/// smallest weight the ring accepts.
pub(super) fn srv_weight(weight: u16) -> u32 {
    u32::from(weight.max(1))
}

/// The records that take traffic: those with a real target (`"."` means "not offered here"),
/// and of those only the lowest priority value; the others are fallbacks for a client that
/// walks the list, which a hash ring does not do.
pub(super) fn usable_srv(records: &[SRV]) -> Vec<&SRV> {
    let offered: Vec<&SRV> = records.iter().filter(|r| !r.target.is_root()).collect();
    let Some(best) = offered.iter().map(|r| r.priority).min() else {
        return Vec::new();
    };
    offered.into_iter().filter(|r| r.priority == best).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn sorted_by_id_deduplicated_max_weight() {
        let found = collect([
            (v4(127, 0, 0, 3), 80, 1),
            (v4(127, 0, 0, 1), 80, 2),
            (v4(127, 0, 0, 3), 80, 5),
            (v4(127, 0, 0, 1), 81, 1),
        ]);
        let ids: Vec<_> = found.iter().map(|f| (f.id.as_str(), f.weight)).collect();
        assert_eq!(
            ids,
            [
                ("127.0.0.1:80", 2),
                ("127.0.0.1:81", 1),
                ("127.0.0.3:80", 5)
            ]
        );
        assert!(found.iter().all(|f| f.id == f.address));
    }

    #[test]
    fn order_of_answers_does_not_matter() {
        let a = [(v4(127, 0, 0, 2), 80, 1), (v4(127, 0, 0, 1), 80, 3)];
        let mut b = a;
        b.reverse();
        assert_eq!(collect(a), collect(b));
    }

    #[test]
    fn ipv6_is_bracketed() {
        let found = collect([(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080, 1)]);
        assert_eq!(found[0].id, "[::1]:8080");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_member() {
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        let found = collect([(v4(127, 0, 0, 1), 80, 1), (mapped, 80, 1)]);
        assert_eq!(ids_of(&found), ["127.0.0.1:80"]);
    }

    fn ids_of(found: &[Found]) -> Vec<&str> {
        found.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn srv_weight_zero_counts_as_one() {
        assert_eq!(srv_weight(0), 1);
        assert_eq!(srv_weight(1), 1);
        assert_eq!(srv_weight(65535), 65535);
    }

    #[test]
    fn srv_lowest_priority_and_no_root_targets() {
        let host = |s: &str| Name::from_ascii(s).unwrap();
        let records = [
            SRV::new(10, 5, 80, host("backup.test.")),
            SRV::new(0, 5, 80, Name::root()),
            SRV::new(1, 5, 80, host("a.test.")),
            SRV::new(1, 0, 81, host("b.test.")),
        ];
        let usable: Vec<_> = usable_srv(&records)
            .iter()
            .map(|r| r.target.to_ascii())
            .collect();
        assert_eq!(usable, ["a.test.", "b.test."]);
        assert!(usable_srv(&[SRV::new(0, 0, 0, Name::root())]).is_empty());
    }
}
