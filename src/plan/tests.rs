//! Unit tests of change plans: reading changes (JSON and CLI arguments) with errors naming their
//! field, the checks a real change would make, and the planned ring agreeing with the ring a real
//! change builds.

use serde_json::json;

use super::*;

fn ring(members: &[(&str, u32)]) -> Ring {
    Ring::new(members.iter().map(|(id, w)| Member::new(*id, *w)), 100).unwrap()
}

fn change(body: &Value) -> Change {
    Change::from_json(body).unwrap()
}

fn refused(current: &Ring, body: &Value) -> PlanError {
    match Change::from_json(body) {
        Err(e) => e,
        Ok(c) => plan(current, &c).expect_err("refused"),
    }
}

#[test]
fn the_planned_ring_is_the_ring_of_the_members_afterwards() {
    let now = ring(&[("a", 1), ("b", 1), ("c", 1)]);
    let c = change(&json!({
        "join": [{"id": "e", "address": "10.0.0.5:80", "weight": 2}],
        "leave": ["b"],
        "weight": {"a": 3}
    }));
    let p = plan(&now, &c).unwrap();
    // Built from scratch in another order: the same ring, the same fingerprint.
    let real = ring(&[("e", 2), ("c", 1), ("a", 3)]);
    assert!(p.after == real);
    assert_eq!(p.after.fingerprint(), real.fingerprint());
    assert_eq!(p.moved, moved(&now, &real));
    assert!(p.moved.share > 0.0 && p.moved.share < 1.0);

    let by_id = |id: &str| p.backends.iter().find(|b| &*b.id == id).unwrap();
    assert_eq!(by_id("a").action, Action::Reweighted);
    assert_eq!(by_id("b").action, Action::Leaves);
    assert_eq!(by_id("c").action, Action::Stays);
    assert_eq!(by_id("e").action, Action::Joins);
    assert_eq!(by_id("e").address.as_deref(), Some("10.0.0.5:80"));
    assert_eq!(by_id("b").share_after, 0.0);
    assert_eq!(by_id("e").share_before, 0.0);
    assert!((by_id("b").moved_out - by_id("b").share_before).abs() < 1e-12);
    let total: f64 = p.backends.iter().map(|b| b.share_after).sum();
    assert!((total - 1.0).abs() < 1e-9);
    let moved_in: f64 = p.backends.iter().map(|b| b.moved_in).sum();
    assert!((moved_in - p.moved.share).abs() < 1e-9);

    let j = p.to_json();
    assert_eq!(j["exact"], true);
    assert_eq!(j["fingerprint"], real.fingerprint());
    assert_eq!(j["fingerprint_before"], now.fingerprint());
    assert!(j["note"].as_str().unwrap().contains("point lists"));
    assert_eq!(j["backends"].as_array().unwrap().len(), 4);
    let text = p.to_text();
    assert!(text.contains("moved:") && text.contains("joins") && text.contains("flows"));
}

#[test]
fn an_empty_change_moves_nothing() {
    let now = ring(&[("a", 1), ("b", 1)]);
    let p = plan(&now, &change(&json!({}))).unwrap();
    assert_eq!(p.moved.share, 0.0);
    assert_eq!(p.after.fingerprint(), now.fingerprint());
    // The same weight again is no change either.
    let p = plan(&now, &change(&json!({"weight": {"a": 1}}))).unwrap();
    assert_eq!(p.moved.share, 0.0);
    assert!(p.backends.iter().all(|b| b.action == Action::Stays));
}

#[test]
fn everyone_leaving_moves_everything() {
    let now = ring(&[("a", 1), ("b", 1)]);
    let p = plan(&now, &change(&json!({"leave": ["a", "b"]}))).unwrap();
    assert_eq!(p.moved.share, 1.0);
    assert_eq!(p.after.points(), 0);
}

#[test]
fn bad_changes_name_their_field() {
    let now = ring(&[("a", 1), ("b", 1)]);
    let cases = [
        (json!([]), "body"),
        (json!({"jion": []}), "jion"),
        (json!({"join": {}}), "join"),
        (json!({"join": [1]}), "join[0]"),
        (json!({"join": [{"id": "e"}]}), "join[0].address"),
        (json!({"join": [{"address": "h:1"}]}), "join[0].id"),
        (
            json!({"join": [{"id": "e", "address": "nope"}]}),
            "join[0].address",
        ),
        (
            json!({"join": [{"id": "e", "address": "h:1", "weight": 0}]}),
            "join[0].weight",
        ),
        (
            json!({"join": [{"id": "e", "address": "h:1", "weight": 1.5}]}),
            "join[0].weight",
        ),
        (
            json!({"join": [{"id": "e", "address": "h:1", "wieght": 1}]}),
            "join[0].wieght",
        ),
        (
            json!({"join": [{"id": "a b", "address": "h:1"}]}),
            "join[0].id",
        ),
        (
            json!({"join": [{"id": "a", "address": "h:1"}]}),
            "join[0].id",
        ),
        (
            json!({"join": [{"id": "e", "address": "h:1"}, {"id": "e", "address": "h:2"}]}),
            "join[1].id",
        ),
        (json!({"leave": "a"}), "leave"),
        (json!({"leave": [1]}), "leave[0]"),
        (json!({"leave": ["zz"]}), "leave[0]"),
        (json!({"leave": ["a", "a"]}), "leave[1]"),
        (json!({"weight": []}), "weight"),
        (json!({"weight": {"zz": 2}}), "weight.zz"),
        (json!({"weight": {"a": "2"}}), "weight.a"),
        (json!({"weight": {"a": 100000}}), "weight.a"),
        (json!({"weight": {"a": 2}, "leave": ["a"]}), "weight.a"),
    ];
    for (body, field) in cases {
        let e = refused(&now, &body);
        assert_eq!(e.field, field, "{body}: {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn too_many_points_is_a_ring_error() {
    let now = Ring::new([Member::new("a", 1)], 1_000_000).unwrap();
    let e = plan(&now, &change(&json!({"weight": {"a": 10000}}))).unwrap_err();
    assert_eq!(e.field, "ring");
}

#[test]
fn command_line_arguments() {
    let j = Change::parse_join("e=10.0.0.5:80").unwrap();
    assert_eq!(
        (j.id.as_str(), j.address.as_str(), j.weight),
        ("e", "10.0.0.5:80", 1)
    );
    let j = Change::parse_join("e=10.0.0.5:80:3").unwrap();
    assert_eq!((j.address.as_str(), j.weight), ("10.0.0.5:80", 3));
    let j = Change::parse_join("e=cache-e.internal:11211:2").unwrap();
    assert_eq!(
        (j.address.as_str(), j.weight),
        ("cache-e.internal:11211", 2)
    );
    let j = Change::parse_join("e=[::1]:80").unwrap();
    assert_eq!((j.address.as_str(), j.weight), ("[::1]:80", 1));
    let j = Change::parse_join("e=[::1]:80:4").unwrap();
    assert_eq!((j.address.as_str(), j.weight), ("[::1]:80", 4));
    for bad in ["e", "e=nohost", "=h:1", "e=h:1:0", "e=h:1:x", "e=h:1:99999"] {
        let e = Change::parse_join(bad).unwrap_err();
        assert!(e.field.starts_with("--join"), "{bad}: {e}");
    }
    assert_eq!(Change::parse_weight("a=2").unwrap(), ("a".to_string(), 2));
    for bad in ["a", "a=0", "a=x", "=2"] {
        assert!(Change::parse_weight(bad).is_err(), "{bad}");
    }
    assert!(Change::parse_leave("a").is_ok());
    assert!(Change::parse_leave("a/b").is_err());
}
