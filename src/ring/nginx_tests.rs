//! Tests of the nginx-compatible placement. Expected hashes and owners were computed
//! independently with Python's `zlib.crc32` (continuing a CRC with `zlib.crc32(data, start)`),
//! the colliding servers found by a search over `127.0.X.Y:29517`; `tests/nginx_compat.rs`
//! checks the same placement against a running nginx.

use super::nginx::{server_points, split_server};
use super::*;

fn nginx(members: &[(&str, u32)]) -> Ring {
    Ring::nginx(members.iter().map(|(id, w)| Member::new(*id, *w))).unwrap()
}

fn owner<'a>(r: &'a Ring, key: &str) -> &'a str {
    &r.member(r.lookup(key.as_bytes()).unwrap()).id
}

#[test]
fn host_and_port_split_like_nginx() {
    let cases: [(&str, &str, &str); 12] = [
        ("127.0.0.1:11211", "127.0.0.1", "11211"),
        ("cache1:11211", "cache1", "11211"),
        // No port: the whole string is the host, even though nginx connects to port 80.
        ("cache1", "cache1", ""),
        ("10.0.0.1", "10.0.0.1", ""),
        ("[::1]:11211", "[::1]", "11211"),
        ("[::1]", "[::1]", ""),
        ("unix:/tmp/memcached.sock", "/tmp/memcached.sock", ""),
        // nginx compares the prefix case-insensitively.
        ("UNIX:/tmp/m.sock", "/tmp/m.sock", ""),
        // The last ':' splits only when digits (or nothing) follow it.
        ("host:", "host", ""),
        ("a:b:80", "a:b", "80"),
        ("example.com:http", "example.com:http", ""),
        ("11211", "11211", ""),
    ];
    for (server, host, port) in cases {
        assert_eq!(
            split_server(server),
            (host.as_bytes(), port.as_bytes()),
            "{server}"
        );
    }
}

#[test]
fn points_match_an_independent_crc32() {
    // (server, point 0, point 1, point 159), from zlib.crc32.
    let expected: [(&str, u32, u32, u32); 4] = [
        ("127.0.0.1:11211", 2847103539, 1256472621, 452585196),
        ("cache1", 3973881790, 1661959578, 3461404155),
        (
            "unix:/tmp/memcached.sock",
            781929983,
            3334409091,
            1241075357,
        ),
        ("[::1]:11211", 3815360626, 819922097, 4180736880),
    ];
    for (server, p0, p1, p159) in expected {
        let points: Vec<u32> = server_points(server, 1).collect();
        assert_eq!(points.len(), 160);
        assert_eq!(
            (points[0], points[1], points[159]),
            (p0, p1, p159),
            "{server}"
        );
    }
    // Point 0 is crc32(host NUL port + four zero bytes): the continuation starts from the base.
    assert_eq!(
        server_points("127.0.0.1:11211", 1).next(),
        Some(crc32fast::hash(b"127.0.0.1\x0011211\0\0\0\0"))
    );
}

#[test]
fn owners_match_an_independent_computation() {
    let r = nginx(&[
        ("10.0.0.1:11211", 1),
        ("10.0.0.2:11211", 2),
        ("cache3:11211", 3),
    ]);
    assert_eq!(r.points(), 960);
    for (key, want) in [
        ("user-1", "10.0.0.1:11211"),
        ("user-2", "cache3:11211"),
        ("user-3", "10.0.0.1:11211"),
        ("/index.html", "cache3:11211"),
        ("a", "cache3:11211"),
        ("hello world", "cache3:11211"),
        // crc32("") = 0: the first point. (nginx itself never hashes an empty key; it falls
        // back to round robin.)
        ("", "10.0.0.2:11211"),
    ] {
        assert_eq!(owner(&r, key), want, "key {key:?}");
    }
}

#[test]
fn key_hash_is_crc32_in_the_top_half() {
    let r = nginx(&[("a:1", 1)]);
    assert_eq!(r.hash(b"user-1"), 2116437524u64 << 32);
    assert_eq!(r.hash(b""), 0);
    // The default ring keeps xxh3.
    assert_eq!(Ring::empty(10).hash(b"user-1"), hash_key(b"user-1"));
}

#[test]
fn weight_gives_160_points_per_unit() {
    let r = nginx(&[("a:1", 1), ("b:2", 3), ("c:3", 2)]);
    assert_eq!(r.vnodes(), NGINX_VNODES);
    assert_eq!(r.points(), 160 * 6);
    let counts: Vec<usize> = r.shares().iter().map(|s| s.0).collect();
    assert_eq!(counts, [160, 480, 320]);
    let total: f64 = r.shares().iter().map(|s| s.1).sum();
    assert!((total - 1.0).abs() < 1e-9);
}

/// `127.0.0.218:29517` (point 50) and `127.0.1.3:29517` (point 93) both land on 1096692749.
const TIE_A: &str = "127.0.0.218:29517";
const TIE_B: &str = "127.0.1.3:29517";
const TIE_HASH: u32 = 1096692749;

#[test]
fn colliding_points_collapse_to_the_server_listed_first() {
    assert_eq!(server_points(TIE_A, 1).nth(50), Some(TIE_HASH));
    assert_eq!(server_points(TIE_B, 1).nth(93), Some(TIE_HASH));
    for (first, second) in [(TIE_A, TIE_B), (TIE_B, TIE_A)] {
        let r = nginx(&[("10.0.0.9:1", 1), (first, 1), (second, 1)]);
        // One point fewer: the two collapsed.
        assert_eq!(r.points(), 479);
        let at = r
            .hashes
            .binary_search(&(u64::from(TIE_HASH) << 32))
            .unwrap();
        assert_eq!(&*r.member(r.owners[at] as usize).id, first);
        assert_eq!(r.lookup_hash(u64::from(TIE_HASH) << 32), r.index_of(first));
        let counts: Vec<usize> = r.shares().iter().map(|s| s.0).collect();
        assert_eq!(counts, [160, 160, 159]);
    }
}

#[test]
fn listing_order_matters_unlike_the_default_ring() {
    let forward = nginx(&[("10.0.0.9:1", 1), (TIE_A, 1), (TIE_B, 1)]);
    let backward = nginx(&[(TIE_B, 1), (TIE_A, 1), ("10.0.0.9:1", 1)]);
    // Member order follows the listing.
    let ids = |r: &Ring| {
        r.members()
            .iter()
            .map(|m| m.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&forward), ["10.0.0.9:1", TIE_A, TIE_B]);
    assert_eq!(ids(&backward), [TIE_B, TIE_A, "10.0.0.9:1"]);
    assert_ne!(forward, backward);
    // The keys of the contested arc are the only ones to change owner.
    let mut moved = 0;
    for i in 0..200_000 {
        let k = format!("k{i}");
        let (f, b) = (owner(&forward, &k), owner(&backward, &k));
        if f != b {
            assert_eq!((f, b), (TIE_A, TIE_B), "key {k}");
            assert!(forward.hash(k.as_bytes()) <= u64::from(TIE_HASH) << 32);
            moved += 1;
        }
    }
    assert!(moved > 0, "no key fell in the contested arc");
    // The default ring does not care about order.
    let members = [Member::new(TIE_A, 1), Member::new(TIE_B, 1)];
    let mut reversed = members.clone();
    reversed.reverse();
    assert_eq!(
        Ring::new(members, 160).unwrap(),
        Ring::new(reversed, 160).unwrap()
    );
}

#[test]
fn lookup_wraps_past_the_last_point() {
    let r = nginx(&[("a:1", 1), ("b:2", 2)]);
    let first = r.owners[0] as usize;
    let last = *r.hashes.last().unwrap();
    assert!(last < u64::MAX);
    // A key past the last point belongs to the first point, as nginx's `% number` does.
    assert_eq!(r.lookup_hash(last + 1), Some(first));
    assert_eq!(r.lookup_hash(u64::MAX), Some(first));
    assert_eq!(r.lookup_hash(0), Some(first));
    assert_eq!(
        r.lookup_hash(last),
        Some(*r.owners.last().unwrap() as usize)
    );
    // A key equal to a point's hash belongs to that point.
    assert_eq!(r.lookup_hash(r.hashes[5]), Some(r.owners[5] as usize));
    assert_eq!(r.lookup_hash(r.hashes[5] + 1), Some(r.owners[6] as usize));
    // Find a real key past the last point and check it too.
    let key = (0..1_000_000)
        .map(|i| format!("w{i}"))
        .find(|k| r.hash(k.as_bytes()) > last)
        .unwrap();
    assert_eq!(r.lookup(key.as_bytes()), Some(first));
}

/// Every lookup answers what nginx's binary search over the deduplicated u32 points answers.
#[test]
fn lookup_matches_nginx_search_over_u32_points() {
    let r = nginx(&[
        ("10.0.0.1:11211", 1),
        ("10.0.0.2:11211", 2),
        ("cache3:11211", 3),
        ("unix:/tmp/m.sock", 1),
    ]);
    let points: Vec<u32> = r.hashes.iter().map(|&h| (h >> 32) as u32).collect();
    assert!(points.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    assert!(r.hashes.iter().all(|&h| h & 0xffff_ffff == 0));
    let find = |hash: u32| {
        // ngx_http_upstream_find_chash_point, then `% number`.
        let (mut i, mut j) = (0, points.len());
        while i < j {
            let k = (i + j) / 2;
            if hash > points[k] {
                i = k + 1;
            } else if hash < points[k] {
                j = k;
            } else {
                return k;
            }
        }
        i % points.len()
    };
    let mut probes: Vec<u32> = vec![0, 1, u32::MAX];
    for &p in &points {
        probes.extend([p, p.wrapping_sub(1), p.wrapping_add(1)]);
    }
    probes.extend((0..20_000u32).map(|i| crc32fast::hash(&i.to_le_bytes())));
    for h in probes {
        assert_eq!(
            r.lookup_hash(u64::from(h) << 32),
            Some(r.owners[find(h)] as usize),
            "hash {h}"
        );
    }
}

/// pingora-ketama ports the same algorithm for IPv4 socket addresses (it sorts unstably, so
/// only rings without collisions can be compared).
#[test]
fn agrees_with_pingora_ketama_on_ipv4_rings() {
    use pingora_ketama::{Bucket, Continuum};
    let addrs: Vec<(String, u32)> = (0..40)
        .map(|i| {
            (
                format!("10.1.{}.{}:{}", i / 7, i * 3 % 256, 11211 + i),
                1 + i % 3,
            )
        })
        .collect();
    let ring = Ring::nginx(addrs.iter().map(|(a, w)| Member::new(a.as_str(), *w))).unwrap();
    let buckets: Vec<Bucket> = addrs
        .iter()
        .map(|(a, w)| Bucket::new(a.parse().unwrap(), *w))
        .collect();
    let ketama = Continuum::new(&buckets);
    for i in 0..20_000 {
        let k = format!("user-{i}");
        let theirs = ketama.node(k.as_bytes()).unwrap().to_string();
        assert_eq!(owner(&ring, &k), theirs, "key {k}");
    }
}

#[test]
fn members_keep_listing_order_and_index_of_finds_them() {
    let r = nginx(&[("c:3", 1), ("a:1", 2), ("b:2", 1)]);
    let ids: Vec<&str> = r.members().iter().map(|m| &*m.id).collect();
    assert_eq!(ids, ["c:3", "a:1", "b:2"]);
    assert_eq!(r.index_of("c:3"), Some(0));
    assert_eq!(r.index_of("a:1"), Some(1));
    assert_eq!(r.index_of("b:2"), Some(2));
    assert_eq!(r.index_of("d:4"), None);
    assert_eq!(r.member(1).weight, 2);
    assert_eq!(r.len(), 3);
    assert_eq!(r.placement(), Placement::Nginx);
    assert_eq!(r.placement().compat(), Some("nginx"));
    assert_eq!(Ring::empty(1).placement().compat(), None);
}

#[test]
fn candidates_walk_distinct_members_clockwise() {
    let r = nginx(&[("a:1", 1), ("b:2", 2), ("c:3", 1), ("d:4", 1)]);
    let n = r.hashes.len();
    for i in 0..500 {
        let k = format!("user-{i}");
        let h = r.hash(k.as_bytes());
        let c: Vec<usize> = r.candidates(k.as_bytes()).collect();
        let start = r.hashes.partition_point(|&p| p < h);
        let mut want = Vec::new();
        for s in 0..n {
            let o = r.owners[(start + s) % n] as usize;
            if !want.contains(&o) {
                want.push(o);
            }
        }
        assert_eq!(c, want, "key {k}");
        assert_eq!(c[0], r.lookup(k.as_bytes()).unwrap());
    }
}

#[test]
fn joining_last_moves_keys_only_to_the_joiner() {
    let before = nginx(&[("a:1", 1), ("b:2", 2), ("c:3", 1)]);
    let after = nginx(&[("a:1", 1), ("b:2", 2), ("c:3", 1), ("d:4", 2)]);
    for i in 0..20_000 {
        let k = format!("user-{i}");
        let (b, a) = (owner(&before, &k), owner(&after, &k));
        assert!(a == b || a == "d:4", "key {k} moved from {b} to {a}");
    }
}

#[test]
fn bad_member_sets_are_rejected() {
    let err = |m: &[(&str, u32)]| Ring::nginx(m.iter().map(|(id, w)| Member::new(*id, *w)));
    assert_eq!(err(&[("a:1", 0)]), Err(RingError::ZeroWeight("a:1".into())));
    assert_eq!(err(&[("", 1)]), Err(RingError::EmptyId));
    assert_eq!(
        err(&[("a:1", 1), ("b:1", 1), ("a:1", 2)]),
        Err(RingError::DuplicateId("a:1".into()))
    );
    assert!(matches!(
        err(&[("a:1", u32::MAX)]),
        Err(RingError::TooManyPoints(_))
    ));
    let empty = Ring::nginx(Vec::new()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.lookup(b"x"), None);
    assert_eq!(empty.candidates(b"x").count(), 0);
    assert_eq!(empty.index_of("a:1"), None);
}

/// The bucket table built for nginx rings answers as a plain search over all points does.
#[test]
fn bucket_table_matches_a_full_search() {
    for n in [1usize, 2, 7, 50] {
        let members: Vec<Member> = (0..n)
            .map(|i| Member::new(format!("10.0.0.{i}:11211"), 1 + (i % 3) as u32))
            .collect();
        let r = Ring::nginx(members).unwrap();
        let plain = |h: u64| {
            let i = r.hashes.partition_point(|&p| p < h);
            r.owners[if i == r.hashes.len() { 0 } else { i }] as usize
        };
        let mut probes: Vec<u64> = vec![0, u64::MAX];
        for &p in &r.hashes {
            probes.extend([p, p.wrapping_sub(1), p.wrapping_add(1)]);
        }
        for b in 0..(r.buckets.len() as u64 - 1) {
            probes.extend([b << r.shift, (b << r.shift).wrapping_sub(1)]);
        }
        for h in probes {
            assert_eq!(r.lookup_hash(h), Some(plain(h)), "n={n} hash={h:#x}");
        }
    }
}

/// Owners recorded from nginx 1.22.1 (Debian 12, glibc 2.36) with `hash $arg_k consistent`,
/// `proxy_next_upstream off` and `max_fails=0`, reading `$upstream_addr` from the access log
/// (the servers refuse connections, which does not change which one is tried). They cover what
/// the live test in `tests/nginx_compat.rs` cannot serve: a unix socket, a name without a port
/// (`localhost`, tried at 127.0.0.1:80), and a bracketed IPv6 address.
#[test]
fn owners_match_recorded_nginx_answers() {
    let r = nginx(&[
        ("unix:/tmp/golden/memcached.sock", 1),
        ("127.0.0.1:1", 2),
        ("localhost", 1),
        ("[::1]:11211", 3),
    ]);
    let recorded = [
        ("user-1", "127.0.0.1:1"),
        ("user-2", "[::1]:11211"),
        ("user-3", "[::1]:11211"),
        ("user-4", "127.0.0.1:1"),
        ("user-5", "localhost"),
        ("user-6", "127.0.0.1:1"),
        ("user-7", "[::1]:11211"),
        ("user-8", "localhost"),
        ("user-9", "[::1]:11211"),
        ("user-22", "unix:/tmp/golden/memcached.sock"),
        ("session-42", "127.0.0.1:1"),
        ("a", "[::1]:11211"),
        ("/index.html", "127.0.0.1:1"),
    ];
    for (key, want) in recorded {
        assert_eq!(owner(&r, key), want, "key {key:?}");
    }
}
