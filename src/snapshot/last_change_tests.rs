//! Every membership change records what it moved in the snapshot it publishes, whatever its
//! source (admin join/update/leave, reload, discovery), and that figure is the exact one.

use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::ring::moved;

fn config(backends: &[(&str, u16, u32)]) -> Config {
    let mut text = String::from("[ring]\nvnodes = 40\n");
    for (id, port, weight) in backends {
        text.push_str(&format!(
            "[[backends]]\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\nweight = {weight}\n"
        ));
    }
    Config::parse(&text).unwrap()
}

/// The change from `before` to the current snapshot is recorded with its exact moved share.
fn assert_recorded(c: &Cluster, before: &Snapshot) {
    let now = c.load();
    let last = now.last_change.expect("a change is recorded");
    assert_eq!(last.version, now.version);
    assert_eq!(last.moved, moved(&before.ring, &now.ring).share);
}

#[test]
fn every_kind_of_change_records_what_it_moved() {
    let c = Cluster::new(&config(&[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)])).unwrap();
    assert_eq!(c.load().last_change, None);

    let before = c.load();
    let (outcome, published) = c.upsert_snapshot("d", "127.0.0.1:4", 1).unwrap();
    assert_eq!(outcome, Upsert::Created);
    assert!(Arc::ptr_eq(&published, &c.load()));
    assert_recorded(&c, &before);
    assert!(c.load().last_change.unwrap().moved > 0.0);

    // An address change moves nothing but is still a change of its own version.
    let before = c.load();
    c.upsert("d", "127.0.0.1:5", 1).unwrap();
    assert_recorded(&c, &before);
    assert_eq!(c.load().last_change.unwrap().moved, 0.0);

    // Nothing changed: nothing new recorded.
    let (outcome, same) = c.upsert_snapshot("d", "127.0.0.1:5", 1).unwrap();
    assert_eq!(outcome, Upsert::Unchanged);
    assert_eq!(same.version, before.version + 1);

    let before = c.load();
    c.remove("a").unwrap();
    assert_recorded(&c, &before);

    let before = c.load();
    c.reload(&config(&[("a", 1, 2), ("b", 2, 1)])).unwrap();
    assert_recorded(&c, &before);

    let before = c.load();
    let origin = Origin::Discovered("dns:test".into());
    let found = crate::discovery::Found {
        id: "127.0.0.1:7".into(),
        address: "127.0.0.1:7".into(),
        weight: 1,
    };
    c.set_discovered(&origin, &[found]).unwrap();
    assert_recorded(&c, &before);

    // Draining is health, not membership: the last change stays.
    let last = c.load().last_change;
    c.set_draining("b", true).unwrap();
    assert_eq!(c.load().last_change, last);
}

#[test]
fn shares_are_the_rings() {
    let c = Cluster::new(&config(&[("a", 1, 1), ("b", 2, 3)])).unwrap();
    let s = c.load();
    assert_eq!(s.shares(), s.ring.shares().as_slice());
}
