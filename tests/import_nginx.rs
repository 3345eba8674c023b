//! `ringproxy import-nginx` through the real binary: a realistic nginx.conf (includes,
//! comments, quoting, weights, a backup server) becomes a config that validates and routes
//! like nginx's ring; what cannot be translated is named with its file and line.

use std::process::Command;

use ringproxy::config::Config;
use ringproxy::ring::{Member, Placement, Ring};

fn import(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringproxy"))
        .arg("import-nginx")
        .args(args)
        .output()
        .expect("run ringproxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_realistic_nginx_conf_becomes_a_config_that_routes_like_nginx() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nginx/nginx.conf");
    let (code, toml, stderr) = import(&[conf]);
    assert_eq!(code, 1, "partial translation: exit 1\n{stderr}");
    assert!(
        stderr.contains("00-upstreams.conf:11") && stderr.contains("backup"),
        "{stderr}"
    );
    let config = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(config.placement, Placement::Nginx);
    // Ids are the server strings as nginx hashes them (a name without a port stays so; the
    // address adds nginx's default port 80).
    let ids: Vec<&str> = config.backends.iter().map(|b| b.id.as_str()).collect();
    assert!(ids.contains(&"cache-4.internal"), "{ids:?}");
    assert!(config
        .backends
        .iter()
        .any(|b| b.id == "cache-4.internal" && b.address == "cache-4.internal:80"));
    // The ring the config forms is nginx's ring over those strings, in listing order.
    let want = Ring::nginx(
        config
            .backends
            .iter()
            .map(|b| Member::new(b.id.as_str(), b.weight)),
    )
    .unwrap();
    let got = config.ring();
    for i in 0..2000 {
        let key = format!("http://cache.example/item/{i}");
        assert_eq!(
            got.member(got.lookup(key.as_bytes()).unwrap()).id,
            want.member(want.lookup(key.as_bytes()).unwrap()).id
        );
    }
}

#[test]
fn errors_exit_2_naming_what_is_wrong() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nginx/nginx.conf");
    let (code, _, stderr) = import(&[conf, "--upstream", "nope"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no upstream named \"nope\""), "{stderr}");
    let (code, _, stderr) = import(&["/nonexistent/nginx.conf"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/nginx.conf"), "{stderr}");
}

#[test]
fn compat_mode_refuses_vnodes_and_unknown_placements() {
    let e = Config::parse("backends = []\n[ring]\ncompat = \"nginx\"\nvnodes = 160\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ring.vnodes"), "{e}");
    let c = Config::parse("backends = []\n[ring]\ncompat = \"nginx\"\n").unwrap();
    assert_eq!(c.vnodes, 160);
    let e = Config::parse("backends = []\n[ring]\ncompat = \"haproxy\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("ring.compat"), "{e}");
}
