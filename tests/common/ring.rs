//! Expected routing, computed with the same `Ring` the proxy builds: a key goes to its first
//! usable candidate clockwise.

use ringproxy::config::DEFAULT_VNODES;
use ringproxy::ring::{Member, Ring};

/// The ring the proxy builds for these ids (weight 1, default vnodes).
pub fn ring(ids: &[&str]) -> Ring {
    Ring::new(ids.iter().map(|id| Member::new(*id, 1)), DEFAULT_VNODES).unwrap()
}

/// Every member of the ring, in `key`'s candidate order (the owner first).
pub fn candidates(ring: &Ring, key: &str) -> Vec<String> {
    ring.candidates(key.as_bytes())
        .map(|i| ring.member(i).id.to_string())
        .collect()
}

/// The first candidate of `key` clockwise that is not in `down`.
pub fn serving(ring: &Ring, key: &str, down: &[&str]) -> String {
    candidates(ring, key)
        .into_iter()
        .find(|id| !down.contains(&id.as_str()))
        .expect("a usable candidate")
}

/// [`serving`] for each key.
pub fn expected(ring: &Ring, keys: &[String], down: &[&str]) -> Vec<String> {
    keys.iter().map(|k| serving(ring, k, down)).collect()
}

/// The first key `user-N` whose candidate list satisfies `pred`.
pub fn find_key(ring: &Ring, pred: impl Fn(&[String]) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("user-{i}"))
        .find(|k| pred(&candidates(ring, k)))
        .expect("a key with those candidates")
}

/// The first key `user-N` whose ring owner is `id`.
pub fn key_owned_by(ring: &Ring, id: &str) -> String {
    find_key(ring, |c| c[0] == id)
}
