//! DNS discovery against a real name server on loopback (tests/common/dns.rs): what one resolve
//! returns for each kind of answer, and how `run` follows changes and rides out failures
//! without ever reporting an empty set. Every wait is bounded.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::*;
use hickory_resolver::proto::op::ResponseCode;
use ringproxy::discovery::{self, DiscoveryError, Found, ResolverSettings, Target};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_millis(150);
const DNS_TIMEOUT: Duration = Duration::from_millis(200);
/// The most any one expected event may take, however slow the machine.
const WITHIN: Duration = Duration::from_secs(5);

fn settings(dns: &TestDns) -> ResolverSettings {
    ResolverSettings {
        nameservers: vec![dns.addr],
        timeout: DNS_TIMEOUT,
    }
}

fn a_target(name: &str, port: u16) -> Target {
    Target {
        name: Some(name.to_string()),
        srv: None,
        port: Some(port),
        weight: 1,
        interval: INTERVAL,
    }
}

fn srv_target(name: &str) -> Target {
    Target {
        name: None,
        srv: Some(name.to_string()),
        port: None,
        weight: 1,
        interval: INTERVAL,
    }
}

/// Loopback addresses to put in answers (discovery never connects to them).
fn local(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, last)
}

fn locals(lasts: &[u8]) -> Vec<Ipv4Addr> {
    lasts.iter().map(|l| local(*l)).collect()
}

fn ids(found: &[Found]) -> Vec<String> {
    found.iter().map(|f| f.id.clone()).collect()
}

fn expected_ids(lasts: &[u8], port: u16) -> Vec<String> {
    lasts
        .iter()
        .map(|l| format!("127.0.1.{l}:{port}"))
        .collect()
}

async fn resolve_once(dns: &TestDns, target: &Target) -> Result<Vec<Found>, DiscoveryError> {
    let resolver = discovery::resolver(&settings(dns)).unwrap();
    discovery::resolve(&resolver, target).await
}

/// `discovery::run` in a task, its callbacks turned into channels.
struct Discovery {
    changes: UnboundedReceiver<(usize, Vec<Found>)>,
    errors: UnboundedReceiver<(usize, DiscoveryError)>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start_discovery(targets: Vec<Target>, settings: ResolverSettings) -> Discovery {
    let (change_tx, changes) = unbounded_channel();
    let (error_tx, errors) = unbounded_channel();
    let shutdown = CancellationToken::new();
    // tokio::spawn also proves the run future is Send, as the integrator will need.
    let task = tokio::spawn(discovery::run(
        targets,
        settings,
        move |i, found| {
            assert!(!found.is_empty(), "on_change with an empty set");
            let _ = change_tx.send((i, found));
        },
        move |i, error: &DiscoveryError| {
            let _ = error_tx.send((i, error.clone()));
        },
        shutdown.clone(),
    ));
    Discovery {
        changes,
        errors,
        shutdown,
        task,
    }
}

impl Discovery {
    async fn next_change(&mut self) -> (usize, Vec<Found>) {
        timeout(WITHIN, self.changes.recv())
            .await
            .expect("no on_change within the deadline")
            .expect("discovery stopped")
    }

    /// The next error that `matches`, skipping others (a round in flight when the server
    /// changed mode may still report the previous kind).
    async fn error_matching(&mut self, what: &str, matches: impl Fn(&DiscoveryError) -> bool) {
        let deadline = Instant::now() + WITHIN;
        loop {
            let next = tokio::time::timeout_at(deadline, self.errors.recv()).await;
            match next {
                Ok(Some((_, error))) if matches(&error) => return,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("discovery stopped while waiting for {what}"),
                Err(_) => panic!("no on_error with {what} within {WITHIN:?}"),
            }
        }
    }

    fn assert_no_change(&mut self, when: &str) {
        match self.changes.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("unexpected on_change {when}: {other:?}"),
        }
    }

    fn assert_no_error(&mut self, when: &str) {
        match self.errors.try_recv() {
            Err(TryRecvError::Empty) => {}
            other => panic!("unexpected on_error {when}: {other:?}"),
        }
    }

    /// Cancels and checks that `run` returns promptly.
    async fn stop(self) {
        self.shutdown.cancel();
        timeout(WITHIN, self.task)
            .await
            .expect("run did not return after shutdown")
            .unwrap();
    }
}

#[tokio::test]
async fn resolve_returns_every_address_sorted_by_id() {
    let dns = start_dns().await;
    dns.set_a("svc.test", locals(&[3, 1, 2]));
    let mut target = a_target("svc.test", 8080);
    target.weight = 3;

    let found = resolve_once(&dns, &target).await.unwrap();
    assert_eq!(ids(&found), expected_ids(&[1, 2, 3], 8080));
    for member in &found {
        assert_eq!(member.address, member.id);
        assert_eq!(member.weight, 3);
    }
}

#[tokio::test]
async fn ipv6_addresses_are_bracketed_and_mixed_with_ipv4() {
    let dns = start_dns().await;
    dns.set_a("dual.test", vec![local(1)]);
    dns.set_aaaa(
        "dual.test",
        vec![Ipv6Addr::LOCALHOST, "fd00::2".parse().unwrap()],
    );
    let found = resolve_once(&dns, &a_target("dual.test", 8080))
        .await
        .unwrap();
    assert_eq!(
        ids(&found),
        ["127.0.1.1:8080", "[::1]:8080", "[fd00::2]:8080"]
    );

    dns.remove("dual.test");
    dns.set_aaaa("v6only.test", vec![Ipv6Addr::LOCALHOST]);
    let found = resolve_once(&dns, &a_target("v6only.test", 9000))
        .await
        .unwrap();
    assert_eq!(ids(&found), ["[::1]:9000"]);
}

#[tokio::test]
async fn srv_gives_hosts_ports_and_weights() {
    let dns = start_dns().await;
    dns.set_srv(
        "_http._tcp.svc.test",
        vec![
            srv(0, 10, 8001, "a.svc.test."),
            // weight 0 counts as 1
            srv(0, 0, 8002, "b.svc.test."),
            // a higher priority value is a fallback: not in the ring
            srv(5, 50, 8003, "backup.svc.test."),
            // a dangling record (its host is already gone) is skipped
            srv(0, 7, 8004, "gone.svc.test."),
        ],
    );
    dns.set_a("a.svc.test", vec![local(1)]);
    dns.set_a("b.svc.test", locals(&[3, 2]));
    dns.set_aaaa("b.svc.test", vec![Ipv6Addr::LOCALHOST]);
    dns.set_a("backup.svc.test", vec![local(9)]);

    let found = resolve_once(&dns, &srv_target("_http._tcp.svc.test"))
        .await
        .unwrap();
    let got: Vec<(&str, u32)> = found.iter().map(|f| (f.id.as_str(), f.weight)).collect();
    assert_eq!(
        got,
        [
            ("127.0.1.1:8001", 10),
            ("127.0.1.2:8002", 1),
            ("127.0.1.3:8002", 1),
            ("[::1]:8002", 1),
        ]
    );
}

#[tokio::test]
async fn srv_with_nothing_usable_is_empty() {
    let dns = start_dns().await;
    let target = srv_target("_http._tcp.svc.test");

    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "empty", "{err}");
    assert!(err.to_string().contains("_http._tcp.svc.test"), "{err}");
    assert!(err.to_string().contains("NXDOMAIN"), "{err}");

    dns.set_srv("_http._tcp.svc.test", vec![srv(0, 1, 80, ".")]);
    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "empty", "{err}");

    dns.set_srv("_http._tcp.svc.test", vec![srv(0, 1, 80, "gone.svc.test.")]);
    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "empty", "{err}");
    assert!(err.to_string().contains("no SRV target"), "{err}");
}

#[tokio::test]
async fn truncated_udp_answers_fall_back_to_tcp() {
    let dns = start_dns().await;
    dns.set_a("svc.test", locals(&[1, 2, 3]));
    dns.truncate_udp(true);
    let found = resolve_once(&dns, &a_target("svc.test", 80)).await.unwrap();
    assert_eq!(ids(&found), expected_ids(&[1, 2, 3], 80));
    assert!(dns.tcp_queries() > 0, "no query came over TCP");
}

#[tokio::test]
async fn one_resolve_names_each_failure() {
    let dns = start_dns().await;
    let target = a_target("svc.test", 80);

    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "empty", "{err}");
    assert!(err.to_string().contains("svc.test"), "{err}");
    assert!(err.to_string().contains("NXDOMAIN"), "{err}");

    dns.set_a("svc.test", vec![]);
    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "empty", "{err}");
    assert!(err.to_string().contains("no records"), "{err}");

    dns.set_a("svc.test", vec![local(1)]);
    dns.fail_with(ResponseCode::ServFail);
    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "failed", "{err}");
    assert!(err.to_string().contains("svc.test"), "{err}");

    dns.drop_all();
    let started = Instant::now();
    let err = resolve_once(&dns, &target).await.unwrap_err();
    assert_eq!(err.label(), "timeout", "{err}");
    assert!(err.to_string().contains("svc.test"), "{err}");
    let bound = DNS_TIMEOUT * discovery::RESOLVE_BUDGET + Duration::from_millis(500);
    assert!(
        started.elapsed() < bound,
        "a timed-out resolve took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalid_targets_fail_without_asking() {
    let dns = start_dns().await;
    let mut both = a_target("svc.test", 80);
    both.srv = Some("_http._tcp.svc.test".into());
    let mut neither = a_target("svc.test", 80);
    neither.name = None;
    let mut no_port = a_target("svc.test", 80);
    no_port.port = None;
    let mut srv_port = srv_target("_http._tcp.svc.test");
    srv_port.port = Some(80);
    let mut zero_weight = a_target("svc.test", 80);
    zero_weight.weight = 0;
    let bad_name = a_target("bad..name", 80);

    for target in [both, neither, no_port, srv_port, zero_weight, bad_name] {
        let err = resolve_once(&dns, &target).await.unwrap_err();
        assert_eq!(err.label(), "invalid", "{target:?}: {err}");
    }
    assert_eq!(dns.queries(), 0);

    let zero_timeout = ResolverSettings {
        nameservers: vec![dns.addr],
        timeout: Duration::ZERO,
    };
    assert_eq!(
        discovery::resolver(&zero_timeout).unwrap_err().label(),
        "invalid"
    );
}

#[tokio::test]
async fn run_follows_the_answer_3_then_4_then_2() {
    let dns = start_dns().await;
    // A long TTL: if anything cached answers, the changes below would not show for minutes.
    dns.set_ttl(300);
    dns.set_a("svc.test", locals(&[1, 2, 3]));
    let mut discovery = start_discovery(vec![a_target("svc.test", 8080)], settings(&dns));

    let (i, found) = discovery.next_change().await;
    assert_eq!(i, 0);
    assert_eq!(ids(&found), expected_ids(&[1, 2, 3], 8080));

    for lasts in [&[1, 2, 3, 4][..], &[2, 4][..]] {
        dns.set_a("svc.test", locals(lasts));
        let changed = Instant::now();
        let (i, found) = discovery.next_change().await;
        assert_eq!(i, 0);
        assert_eq!(ids(&found), expected_ids(lasts, 8080));
        // About one interval; the slack is for a loaded CI machine, far below any TTL.
        assert!(
            changed.elapsed() < INTERVAL + Duration::from_secs(1),
            "change to {lasts:?} reported after {:?}",
            changed.elapsed()
        );
    }
    discovery.assert_no_error("while the server answered");
    discovery.stop().await;
}

#[tokio::test]
async fn unchanged_answers_are_not_reported_again() {
    let dns = start_dns().await;
    dns.set_a("svc.test", locals(&[1, 2, 3]));
    let mut discovery = start_discovery(vec![a_target("svc.test", 80)], settings(&dns));
    discovery.next_change().await;

    // Four more rounds (A + AAAA each) with the same answer.
    dns.wait_queries(dns.queries() + 8, WITHIN).await;
    discovery.assert_no_change("for an unchanged answer");
    discovery.assert_no_error("for an unchanged answer");
    discovery.stop().await;
}

/// Fails the server with `fail`, checks the outage is reported and nothing else, then heals it:
/// the same records must not be reported again (the last good set was kept), a new one must.
async fn outage_keeps_the_last_set(
    fail: impl Fn(&TestDns),
    what: &str,
    matches: impl Fn(&DiscoveryError) -> bool,
) {
    let dns = start_dns().await;
    dns.set_a("svc.test", locals(&[1, 2, 3]));
    let mut discovery = start_discovery(vec![a_target("svc.test", 80)], settings(&dns));
    discovery.next_change().await;

    fail(&dns);
    discovery.error_matching(what, &matches).await;
    discovery.error_matching(what, &matches).await;
    discovery.assert_no_change(&format!("during {what}"));

    dns.answer_normally();
    dns.set_a("svc.test", locals(&[1, 2, 3]));
    dns.wait_queries(dns.queries() + 6, WITHIN).await;
    discovery.assert_no_change(&format!("after {what}, same records"));

    dns.set_a("svc.test", locals(&[1, 2]));
    let (_, found) = discovery.next_change().await;
    assert_eq!(ids(&found), expected_ids(&[1, 2], 80));
    discovery.stop().await;
}

#[tokio::test]
async fn servfail_keeps_the_last_set() {
    outage_keeps_the_last_set(
        |dns| dns.fail_with(ResponseCode::ServFail),
        "SERVFAIL",
        |e| e.label() == "failed" && e.to_string().contains("svc.test"),
    )
    .await;
}

#[tokio::test]
async fn timeouts_keep_the_last_set() {
    outage_keeps_the_last_set(TestDns::drop_all, "a timeout", |e| {
        e.label() == "timeout" && e.to_string().contains("svc.test")
    })
    .await;
}

#[tokio::test]
async fn nxdomain_keeps_the_last_set() {
    outage_keeps_the_last_set(
        |dns| dns.remove("svc.test"),
        "NXDOMAIN",
        |e| e.label() == "empty" && e.to_string().contains("NXDOMAIN"),
    )
    .await;
}

#[tokio::test]
async fn no_records_keeps_the_last_set() {
    outage_keeps_the_last_set(
        |dns| dns.set_a("svc.test", vec![]),
        "no records",
        |e| e.label() == "empty" && e.to_string().contains("no records"),
    )
    .await;
}

#[tokio::test]
async fn run_reports_each_target_by_index_and_a_late_name() {
    let dns = start_dns().await;
    dns.set_srv(
        "_http._tcp.svc.test",
        vec![
            srv(0, 5, 8001, "a.svc.test."),
            srv(0, 0, 8002, "b.svc.test."),
        ],
    );
    dns.set_a("a.svc.test", vec![local(1)]);
    dns.set_a("b.svc.test", vec![local(2)]);
    let mut invalid = a_target("svc.test", 80);
    invalid.port = None;
    let targets = vec![
        invalid,
        a_target("late.test", 80),
        srv_target("_http._tcp.svc.test"),
    ];
    let mut discovery = start_discovery(targets, settings(&dns));

    // Target 0 is reported once as invalid; target 1 doesn't exist yet; target 2 resolves.
    discovery
        .error_matching("target 0 invalid", |e| e.label() == "invalid")
        .await;
    discovery
        .error_matching("late.test NXDOMAIN", |e| {
            e.to_string().contains("late.test")
        })
        .await;
    let (i, found) = discovery.next_change().await;
    assert_eq!(i, 2);
    let got: Vec<(&str, u32)> = found.iter().map(|f| (f.id.as_str(), f.weight)).collect();
    assert_eq!(got, [("127.0.1.1:8001", 5), ("127.0.1.2:8002", 1)]);

    // A name that appears later is reported on its first success.
    dns.set_a("late.test", vec![local(7)]);
    let (i, found) = discovery.next_change().await;
    assert_eq!(i, 1);
    assert_eq!(ids(&found), ["127.0.1.7:80"]);
    discovery.stop().await;
}
