//! Golden ring vectors: where keys land, pinned as data.
//!
//! **A change to these vectors is a breaking change for every deployment**: every user's keys
//! move to other backends on upgrade (caches go cold, sessions are lost). If one of these tests
//! fails, the ring's placement changed. Unless that is the point of your change, fix the code,
//! not the data. If it is the point, regenerate the data (below), say so in the commit, and add
//! a version note to the README telling users that keys move and how to keep the old placement.
//! (HAProxy 3.0 changed how server ids are hashed and its fix notes say it kept large cache
//! users from upgrading.)
//!
//! The expected values live in `tests/data/ring_golden.txt` (its header documents the format).
//! They were produced once from the code by [`regenerate_golden`] and are never generated when
//! the suite runs: `tests/common/ring.rs` computes expected routing with the very `Ring` under
//! test, so without this file a change of placement would pass every other test.
//!
//! The inputs (member sets, vnodes, keys) are defined here; the tests check that the data file
//! holds exactly these inputs, so it cannot silently lose coverage. Per set the file pins the
//! owner of every key, the full candidate order of every 8th key, `points()` and `shares()`;
//! globally it pins `hash_key` of every key.
//!
//! To regenerate after an intended placement change (a breaking change, see above):
//!
//! ```text
//! RINGPROXY_REGEN_GOLDEN=1 cargo test --test ring_golden -- --ignored regenerate_golden
//! ```
//!
//! Without the variable, `regenerate_golden` only checks that the file is what the generator
//! would write today.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use ringproxy::config::DEFAULT_VNODES;
use ringproxy::ring::{hash_key, Member, Ring};

/// Every how many keys (in key order) the full candidate order is pinned.
const ORDER_EVERY: usize = 8;

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ring_golden.txt")
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// A member set: a name, and (id, weight) in the order given to `Ring::new`.
struct GoldenSet {
    name: String,
    vnodes: u32,
    members: Vec<(String, u32)>,
}

/// The member sets, each at 160 and 1000 vnodes.
fn golden_sets() -> Vec<GoldenSet> {
    let ws = |list: &[(&str, u32)]| -> Vec<(String, u32)> {
        list.iter().map(|(id, w)| (id.to_string(), *w)).collect()
    };
    let ones =
        |ids: &[&str]| -> Vec<(String, u32)> { ids.iter().map(|id| (id.to_string(), 1)).collect() };
    let bases: Vec<(&str, Vec<(String, u32)>)> = vec![
        ("three", ones(&["cache-a", "cache-b", "cache-c"])),
        // Deliberately not in id order: the ring sorts members itself.
        (
            "weighted",
            ws(&[
                ("node-5", 2),
                ("node-3", 3),
                ("node-1", 1),
                ("node-4", 1),
                ("node-2", 2),
            ]),
        ),
        (
            "ten",
            ones(&[
                "cache-a", "cache-b", "cache-c", "cache-d", "cache-e", "cache-f", "cache-g",
                "cache-h", "cache-i", "cache-j",
            ]),
        ),
        // Ids of 1-3 bytes, where a weak point hash once made `n10`/`n11` share points.
        ("short-ids", ones(&["a", "n1", "n2", "n10", "n11", "z99"])),
        (
            "non-ascii",
            ws(&[("café", 1), ("緩存-1", 2), ("🦀", 1), ("ü", 1)]),
        ),
    ];
    let mut sets = Vec::new();
    for vnodes in [160, 1000] {
        for (base, members) in &bases {
            sets.push(GoldenSet {
                name: format!("{base}/{vnodes}"),
                vnodes,
                members: members.clone(),
            });
        }
    }
    sets
}

/// The keys, as bytes: `user-N`, 1-byte keys (ASCII and not), short keys, long keys across
/// xxh3's length classes (≤16, 17-128, 129-240, >240 bytes, and past a 1024-byte block), UTF-8
/// and invalid UTF-8.
fn golden_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..140 {
        keys.push(format!("user-{i}").into_bytes());
    }
    for b in [b'a', b'z', b'0', b'9', b'-', b'~', 0x00, 0x7f, 0x80, 0xff] {
        keys.push(vec![b]);
    }
    for i in 0..20 {
        keys.push(format!("k{i}").into_bytes());
    }
    for s in ["ab", "n1", "n10", "xyz", "/a"] {
        keys.push(s.as_bytes().to_vec());
    }
    for len in [
        17usize, 33, 64, 100, 128, 129, 200, 240, 241, 256, 500, 1024, 1025, 2048, 4000,
    ] {
        let mut key = format!("long-{len}:").into_bytes();
        let mut i = 0;
        while key.len() < len {
            key.push(b'a' + (i * 7 % 26) as u8);
            i += 1;
        }
        keys.push(key);
    }
    keys.push((0..=255u8).collect());
    for s in [
        "/api/v1/users/42/profile",
        "session=3f2a9c1e-8b7d-4e6f-a5c4-1d2e3f4a5b6c",
        "tenant:acme:user:1001",
    ] {
        keys.push(s.as_bytes().to_vec());
    }
    for s in [
        "é",
        "ключ-1",
        "用户-7",
        "🦀",
        "café",
        "naïve-user",
        "ü-42",
        "€",
        "ß",
    ] {
        keys.push(s.as_bytes().to_vec());
    }
    // Not UTF-8: a lone continuation byte, a truncated sequence, Latin-1, a BOM-like prefix.
    for bytes in [
        &b"\x80\x81"[..],
        b"\xc3",
        b"caf\xe9",
        b"\xff\xfe\x00k",
        b"user-\xf0\x9f",
    ] {
        keys.push(bytes.to_vec());
    }
    keys
}

// ---------------------------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------------------------

/// A token: printable ASCII except `\` as is, every other byte as `\xHH`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' {
            out.push(b as char);
        } else {
            write!(out, "\\x{b:02x}").unwrap();
        }
    }
    out
}

fn unescape(token: &str) -> Vec<u8> {
    let bytes = token.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            assert_eq!(bytes.get(i + 1), Some(&b'x'), "bad escape in {token:?}");
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

const HEADER: &str = "\
# Golden ring vectors for ringproxy, pinned by tests/ring_golden.rs.
#
# A CHANGE TO THESE VECTORS IS A BREAKING CHANGE FOR EVERY DEPLOYMENT: keys move to other
# backends on upgrade. Never edit or regenerate this file to make a test pass; if placement is
# meant to change, regenerate it (see tests/ring_golden.rs) and add a version note to the README.
#
# Produced once from the code, not at test time. Format: one record per line, tokens separated
# by one space; `#` starts a comment line. Keys and ids are written byte by byte: printable ASCII
# except `\\` as is, every other byte as `\\xHH` (so non-ASCII ids appear as their UTF-8 bytes).
#
#   key N KEY HASH         key number N (from 0) is KEY; hash_key(KEY) is HASH (16 hex digits)
#   set NAME VNODES        starts a member set; the records below belong to it
#   member ID WEIGHT       one member, in the order passed to Ring::new
#   points N               Ring::points()
#   share ID POINTS FRAC   Ring::shares() of member ID: its points and its fraction of the
#                          hash space (an f64, shortest form that reads back exactly)
#   owner N ID             the owner of key N (Ring::lookup)
#   order N ID ID ...      the full candidate order of key N (Ring::candidates), owner first
";

/// The file as the generator writes it from today's code.
fn generate() -> String {
    let keys = golden_keys();
    let mut out = String::from(HEADER);
    out.push('\n');
    for (n, key) in keys.iter().enumerate() {
        writeln!(out, "key {n} {} {:016x}", escape(key), hash_key(key)).unwrap();
    }
    for set in golden_sets() {
        let ring = build(&set.members, set.vnodes);
        let id = |i: usize| escape(ring.member(i).id.as_bytes());
        writeln!(out, "\nset {} {}", set.name, set.vnodes).unwrap();
        for (member, weight) in &set.members {
            writeln!(out, "member {} {weight}", escape(member.as_bytes())).unwrap();
        }
        writeln!(out, "points {}", ring.points()).unwrap();
        for (i, (points, frac)) in ring.shares().into_iter().enumerate() {
            writeln!(out, "share {} {points} {frac:?}", id(i)).unwrap();
        }
        for (n, key) in keys.iter().enumerate() {
            writeln!(out, "owner {n} {}", id(ring.lookup(key).unwrap())).unwrap();
        }
        for (n, key) in keys.iter().enumerate().step_by(ORDER_EVERY) {
            let order: Vec<String> = ring.candidates(key).map(id).collect();
            writeln!(out, "order {n} {}", order.join(" ")).unwrap();
        }
    }
    out
}

fn build(members: &[(String, u32)], vnodes: u32) -> Ring {
    Ring::new(
        members.iter().map(|(id, w)| Member::new(id.as_str(), *w)),
        vnodes,
    )
    .unwrap()
}

/// One member set as read from the file.
#[derive(Default)]
struct SetRecord {
    name: String,
    vnodes: u32,
    members: Vec<(String, u32)>,
    points: Option<usize>,
    shares: Vec<(String, usize, f64)>,
    owners: BTreeMap<usize, String>,
    orders: BTreeMap<usize, Vec<String>>,
}

struct Golden {
    /// (key, hash) by key number.
    keys: Vec<(Vec<u8>, u64)>,
    sets: Vec<SetRecord>,
}

fn load() -> Golden {
    let path = data_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut golden = Golden {
        keys: Vec::new(),
        sets: Vec::new(),
    };
    for (line_no, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}: {line:?}", path.display(), line_no + 1);
        let tokens: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> usize { tokens[i].parse().unwrap_or_else(|_| panic!("{}", at())) };
        let id = |i: usize| -> String {
            String::from_utf8(unescape(tokens[i])).unwrap_or_else(|_| panic!("{}", at()))
        };
        let set = golden.sets.last_mut();
        match (tokens[0], tokens.len(), set) {
            ("key", 4, None) => {
                assert_eq!(num(1), golden.keys.len(), "{}", at());
                let hash =
                    u64::from_str_radix(tokens[3], 16).unwrap_or_else(|_| panic!("{}", at()));
                golden.keys.push((unescape(tokens[2]), hash));
            }
            ("set", 3, _) => golden.sets.push(SetRecord {
                name: tokens[1].to_string(),
                vnodes: num(2) as u32,
                ..SetRecord::default()
            }),
            ("member", 3, Some(set)) => set.members.push((id(1), num(2) as u32)),
            ("points", 2, Some(set)) => set.points = Some(num(1)),
            ("share", 4, Some(set)) => {
                let frac = tokens[3].parse().unwrap_or_else(|_| panic!("{}", at()));
                set.shares.push((id(1), num(2), frac));
            }
            ("owner", 3, Some(set)) => {
                set.owners.insert(num(1), id(2));
            }
            ("order", n, Some(set)) if n >= 3 => {
                set.orders.insert(num(1), (2..n).map(id).collect());
            }
            _ => panic!("unknown or misplaced record at {}", at()),
        }
    }
    golden
}

impl Golden {
    /// Panics unless the file holds exactly the inputs defined in this test, so a truncated or
    /// hand-trimmed file cannot pass with less coverage.
    fn assert_complete(&self) {
        let keys = golden_keys();
        assert!(keys.len() >= 200, "at least 200 keys");
        let file_keys: Vec<&Vec<u8>> = self.keys.iter().map(|(k, _)| k).collect();
        assert!(
            file_keys.iter().copied().eq(keys.iter()),
            "the file's keys are not golden_keys(): regenerate (see the top of this file)"
        );
        let sets = golden_sets();
        let names: Vec<&str> = self.sets.iter().map(|s| s.name.as_str()).collect();
        let want: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, want, "the file's sets are not golden_sets()");
        for (file, set) in self.sets.iter().zip(&sets) {
            assert_eq!(file.vnodes, set.vnodes, "{}: vnodes", set.name);
            assert_eq!(file.members, set.members, "{}: members", set.name);
            assert!(file.points.is_some(), "{}: no points record", set.name);
            assert_eq!(file.shares.len(), set.members.len(), "{}: shares", set.name);
            let all: Vec<usize> = (0..keys.len()).collect();
            assert!(
                file.owners.keys().copied().eq(all.iter().copied()),
                "{}: an owner for every key",
                set.name
            );
            let every: Vec<usize> = (0..keys.len()).step_by(ORDER_EVERY).collect();
            assert!(
                file.orders.keys().copied().eq(every.iter().copied()),
                "{}: an order for every {ORDER_EVERY}th key",
                set.name
            );
        }
    }

    fn key(&self, n: usize) -> &[u8] {
        &self.keys[n].0
    }
}

/// A key for a failure message: escaped, cut at 40 characters.
fn show(key: &[u8]) -> String {
    let s = escape(key);
    if s.len() > 40 {
        format!("{}… ({} bytes)", &s[..40], key.len())
    } else {
        s
    }
}

/// Panics with a count and the first few of `wrong`, if any.
fn report(what: &str, checked: usize, wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{what}: {} of {checked} differ from tests/data/ring_golden.txt — ring placement \
         changed, which moves users' keys on upgrade (see tests/ring_golden.rs). First ones:\n  {}",
        wrong.len(),
        wrong[..wrong.len().min(12)].join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_file_covers_every_set_and_key() {
    load().assert_complete();
}

#[test]
fn hash_key_positions_match_golden() {
    let golden = load();
    let wrong: Vec<String> = golden
        .keys
        .iter()
        .enumerate()
        .filter(|(_, (key, hash))| hash_key(key) != *hash)
        .map(|(n, (key, hash))| {
            format!(
                "key {n} {}: hash_key {:016x}, golden {hash:016x}",
                show(key),
                hash_key(key)
            )
        })
        .collect();
    report("hash_key positions", golden.keys.len(), &wrong);
}

#[test]
fn points_and_shares_match_golden() {
    let golden = load();
    golden.assert_complete();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for set in &golden.sets {
        let ring = build(&set.members, set.vnodes);
        checked += 1 + set.shares.len();
        if Some(ring.points()) != set.points {
            wrong.push(format!(
                "{}: points() {}, golden {:?}",
                set.name,
                ring.points(),
                set.points
            ));
        }
        let shares = ring.shares();
        for (id, points, frac) in &set.shares {
            let i = ring
                .index_of(id)
                .unwrap_or_else(|| panic!("{}: no {id}", set.name));
            if shares[i] != (*points, *frac) {
                wrong.push(format!(
                    "{}: share of {id} is {:?}, golden ({points}, {frac:?})",
                    set.name, shares[i]
                ));
            }
        }
    }
    report("points and shares", checked, &wrong);
}

#[test]
fn owners_match_golden() {
    let golden = load();
    golden.assert_complete();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for set in &golden.sets {
        let ring = build(&set.members, set.vnodes);
        for (&n, want) in &set.owners {
            checked += 1;
            let got = &ring.member(ring.lookup(golden.key(n)).unwrap()).id;
            if **got != **want {
                wrong.push(format!(
                    "{}: key {n} {} on {got}, golden {want}",
                    set.name,
                    show(golden.key(n))
                ));
            }
        }
    }
    report("owners", checked, &wrong);
}

#[test]
fn candidate_orders_match_golden() {
    let golden = load();
    golden.assert_complete();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for set in &golden.sets {
        let ring = build(&set.members, set.vnodes);
        for (&n, want) in &set.orders {
            checked += 1;
            let got: Vec<String> = ring
                .candidates(golden.key(n))
                .map(|i| ring.member(i).id.to_string())
                .collect();
            if got != *want {
                wrong.push(format!(
                    "{}: key {n} {} candidates {got:?}, golden {want:?}",
                    set.name,
                    show(golden.key(n))
                ));
            }
        }
    }
    report("candidate orders", checked, &wrong);
}

/// A config without `ring.vnodes` gets the default, so changing it moves every such user's
/// keys just like a change of placement (the README tells users to pin vnodes for that reason).
#[test]
fn default_vnodes_is_pinned() {
    assert_eq!(
        DEFAULT_VNODES, 1000,
        "changing the default vnodes moves keys of every config that does not set it"
    );
}

/// Writes `tests/data/ring_golden.txt` from today's code when `RINGPROXY_REGEN_GOLDEN=1`;
/// otherwise checks that the file is exactly what it would write. Not run by default: the
/// golden file is data, produced once.
#[test]
#[ignore = "generator for tests/data/ring_golden.txt; see the top of this file"]
fn regenerate_golden() {
    let text = generate();
    let path = data_path();
    if std::env::var("RINGPROXY_REGEN_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        println!("wrote {}", path.display());
    } else {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} is not what today's code generates; RINGPROXY_REGEN_GOLDEN=1 rewrites it \
             (a breaking change: read the top of tests/ring_golden.rs first)",
            path.display()
        );
    }
}
