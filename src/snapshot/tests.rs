//! The change path: versions, refusals, concurrency, reloads, the state file.

use std::sync::Arc;

use super::*;
use crate::config::Config;

fn config(extra: &str, backends: &[(&str, u16, u32)]) -> Config {
    let mut text = format!("[ring]\nvnodes = 40\n{extra}\n");
    for (id, port, weight) in backends {
        text.push_str(&format!(
            "[[backends]]\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\nweight = {weight}\n"
        ));
    }
    Config::parse(&text).unwrap()
}

fn cluster() -> Cluster {
    Cluster::new(&config("", &[("c", 3, 1), ("a", 1, 1), ("b", 2, 1)])).unwrap()
}

#[test]
fn backends_line_up_with_ring_members() {
    let c = cluster();
    let s = c.load();
    assert_eq!(s.version, 1);
    for (i, m) in s.ring.members().iter().enumerate() {
        assert_eq!(m.id, s.backends[i].id);
    }
}

#[test]
fn changes_bump_the_version_and_refusals_change_nothing() {
    let c = cluster();
    assert_eq!(c.upsert("d", "127.0.0.1:4", 1), Ok(Upsert::Created));
    assert_eq!(c.load().version, 2);
    assert_eq!(c.upsert("d", "127.0.0.1:4", 1), Ok(Upsert::Unchanged));
    assert_eq!(c.load().version, 2);
    assert_eq!(c.upsert("d", "127.0.0.1:5", 2), Ok(Upsert::Updated));
    assert_eq!(c.load().get("d").unwrap().weight, 2);
    assert!(matches!(
        c.upsert("e", "nope", 1),
        Err(ChangeError::InvalidAddress(_))
    ));
    assert!(matches!(
        c.upsert("e", "127.0.0.1:1", 0),
        Err(ChangeError::InvalidWeight(_))
    ));
    assert!(matches!(c.remove("zz"), Err(ChangeError::NotFound(_))));
    assert_eq!(c.load().version, 3);
    c.remove("d").unwrap();
    assert_eq!(c.load().version, 4);
    assert!(c.load().get("d").is_none());
}

#[test]
fn concurrent_writers_lose_nothing() {
    let c = Arc::new(cluster());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    c.upsert(&format!("n{t}-{i}"), "127.0.0.1:9", 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = c.load();
    assert_eq!(s.backends.len(), 3 + 200);
    assert_eq!(s.version, 1 + 200);
}

#[test]
fn reload_applies_membership_and_settings_in_one_swap_and_keeps_health() {
    let c = cluster();
    c.set_draining("a", true).unwrap();
    let before = c.load();
    let r = c
        .reload(&config(
            "[proxy]\nmax_attempts = 2\n",
            &[("a", 1, 1), ("b", 2, 2), ("d", 4, 1)],
        ))
        .unwrap();
    assert_eq!(r.joined, ["d"]);
    assert_eq!(r.left, ["c"]);
    assert_eq!(r.changed, ["b"]);
    assert_eq!(r.settings, ["proxy"]);
    assert!(r.ignored.is_empty());
    assert!(r.moved > 0.0 && r.moved < 1.0, "{}", r.moved);
    let after = c.load();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.settings.proxy.max_attempts, 2);
    assert!(after.get("a").unwrap().health.is_draining(), "drain kept");
    assert!(Arc::ptr_eq(
        &after.get("a").unwrap().health,
        &before.get("a").unwrap().health
    ));
    assert_eq!(r.fingerprint, after.fingerprint);
}

#[test]
fn reload_of_an_unchanged_file_keeps_admin_changes() {
    let base = config("", &[("c", 3, 1), ("a", 1, 1), ("b", 2, 1)]);
    let c = Cluster::new(&base).unwrap();
    c.upsert("z", "127.0.0.1:26", 1).unwrap();
    let v = c.load().version;
    let r = c.reload(&base).unwrap();
    assert!(r.joined.is_empty() && r.left.is_empty() && r.settings.is_empty());
    assert_eq!(r.moved, 0.0);
    assert_eq!(c.load().version, v);
    assert!(c.load().get("z").is_some());
}

#[test]
fn reload_reports_fields_that_need_a_restart_and_keeps_them() {
    let c = cluster();
    let r = c
        .reload(&config(
            "[proxy]\nlisten = \"127.0.0.1:1\"\nworkers = 7\nio = \"epoll\"\n",
            &[("c", 3, 1), ("a", 1, 1), ("b", 2, 1)],
        ))
        .unwrap();
    assert_eq!(r.ignored, ["proxy.listen", "proxy.workers", "proxy.io"]);
    assert_eq!(c.load().settings.proxy.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.load().settings.proxy.io, crate::config::Io::IoUring);
}

#[test]
fn the_state_file_wins_at_start_and_follows_every_change() {
    let path = std::env::temp_dir().join(format!("ringproxy-cluster-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let extra = format!("[admin]\nstate_file = {:?}\n", path.display().to_string());
    let base = config(&extra, &[("a", 1, 1), ("b", 2, 1)]);
    let c = Cluster::new(&base).unwrap();
    c.upsert("j", "127.0.0.1:10", 2).unwrap();
    c.remove("a").unwrap();
    c.set_draining("b", true).unwrap();
    drop(c);
    // A restart with the same config: the state file's membership, drain included.
    let c = Cluster::new(&base).unwrap();
    let s = c.load();
    let ids: Vec<&str> = s.backends.iter().map(|b| &*b.id).collect();
    assert_eq!(ids, ["b", "j"]);
    assert_eq!(s.get("j").unwrap().weight, 2);
    assert!(s.get("b").unwrap().health.is_draining());
    // A reload with a changed [[backends]] list rewrites it.
    c.reload(&config(&extra, &[("x", 9, 1)])).unwrap();
    let c = Cluster::new(&base).unwrap();
    let ids: Vec<String> = c.load().backends.iter().map(|b| b.id.to_string()).collect();
    assert_eq!(ids, ["x"]);
    std::fs::write(&path, "not json").unwrap();
    let e = Cluster::new(&base).err().unwrap().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn saved_ramps_resume_and_finished_ones_end_as_the_driver_ends_them() {
    let path = std::env::temp_dir().join(format!("ringproxy-ramps-{}.json", std::process::id()));
    let ramp = |dir: &str, done: u64| {
        format!(
            "\"ramp\": {{\"direction\": \"{dir}\", \"duration_ms\": 10000, \"done_ms\": {done}}}"
        )
    };
    let member = |id: &str, port: u16, ramp: &str| {
        let sep = if ramp.is_empty() { "" } else { ", " };
        format!("{{\"id\": \"{id}\", \"address\": \"127.0.0.1:{port}\", \"weight\": 1{sep}{ramp}}}")
    };
    let members = [
        member("up", 1, &ramp("up", 2500)),
        member("down", 2, &ramp("down", 2500)),
        member("warm", 3, &ramp("up", 10000)),
        member("gone", 4, &ramp("down", 10000)),
        member("plain", 5, ""),
    ];
    std::fs::write(
        &path,
        format!("{{\"format\": 1, \"backends\": [{}]}}", members.join(", ")),
    )
    .unwrap();
    let extra = format!("[admin]\nstate_file = {:?}\n", path.display().to_string());
    let c = Cluster::new(&config(&extra, &[("x", 9, 1)])).unwrap();
    let s = c.load();
    let full = s.ring.vnodes();
    let ramp_of = |id: &str| s.get(id).unwrap().ramp;
    // A quarter done: a quarter of the points on (up), three quarters left (down).
    let up = ramp_of("up").unwrap();
    assert_eq!((up.direction, up.points), (RampDirection::Up, full / 4));
    let down = ramp_of("down").unwrap();
    assert_eq!(
        (down.direction, down.points),
        (RampDirection::Down, full - full / 4)
    );
    assert!(!s.get("down").unwrap().health.is_draining());
    // Saved as they finished: a plain member, and a drained one.
    assert_eq!(ramp_of("warm"), None);
    assert!(!s.get("warm").unwrap().health.is_draining());
    assert_eq!(ramp_of("gone"), None);
    assert!(s.get("gone").unwrap().health.is_draining());
    assert_eq!(ramp_of("plain"), None);
    std::fs::remove_file(&path).unwrap();
}
