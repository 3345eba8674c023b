//! The status page in a real browser: headless Chromium driven over WebDriver (chromedriver and
//! fantoccini) against a ringproxy with real backends and an admin token. The page asks for the
//! token, then shows every backend with its state, draws one arc group per backend, answers the
//! key box as `GET /route` does and previews a change as `POST /ring/plan` does. A screenshot
//! goes to `target/status-page.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `RINGPROXY_CHROMIUM` and
//! `RINGPROXY_CHROMEDRIVER` naming the binaries). Without them the test fails, unless
//! `RINGPROXY_ALLOW_NO_BROWSER=1`, when it passes saying loudly that it skipped.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Method, StatusCode};
use serde_json::{json, Value};

const TOKEN: &str = "page-test-token";

/// The binary `env` names, else the first of `candidates`; `None` if that does not exist.
fn binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .map(Path::to_path_buf)
}

/// A chromedriver this test started; killed (it alone, by its handle) when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let stdout = child.stdout.take().expect("piped");
        // "ChromeDriver was started successfully on port 39571."
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Not the first line, "Starting ChromeDriver ... on port 0".
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("chromedriver did not say which port it listens on")
            });
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it answers `Some`, for up to 15 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn admin(p: &TestProxy, method: Method, path: &str, body: &str) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let r = p
        .http
        .request(
            method,
            &p.admin_url(path),
            &[("authorization", auth.as_str())],
            body.to_string(),
        )
        .await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.text());
    r.json()
}

/// Where screenshots go: `target/` of this workspace (or `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    )
}

#[tokio::test]
async fn the_status_page_works_in_a_real_browser() {
    let chromium = binary(
        "RINGPROXY_CHROMIUM",
        &[
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ],
    );
    let chromedriver = binary(
        "RINGPROXY_CHROMEDRIVER",
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        let allowed = std::env::var("RINGPROXY_ALLOW_NO_BROWSER").is_ok_and(|v| v == "1");
        let message = "status page browser test: Chromium or chromedriver not found \
            (apt-get install chromium chromium-driver, or set RINGPROXY_CHROMIUM and \
            RINGPROXY_CHROMEDRIVER)";
        if allowed {
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!!!! SKIPPED: {message}; RINGPROXY_ALLOW_NO_BROWSER=1 lets it pass !!!!!!!!!!\n"
            );
            return;
        }
        panic!("{message}; set RINGPROXY_ALLOW_NO_BROWSER=1 to skip it");
    };

    let b = start_backends(&["cache-a", "cache-b", "cache-c"]).await;
    let p = start_proxy(&config_with(
        &format!("token = \"{TOKEN}\"\n[ring]\nvnodes = 300"),
        &[&b[0], &b[1], &b[2]],
    ))
    .await;
    admin(&p, Method::POST, "/backends/cache-c/drain", "").await;
    // Traffic while the page watches, so rates and percentiles have something to show.
    let traffic = tokio::spawn({
        let (http, url) = (p.http.clone(), p.url("/"));
        async move {
            for i in 0..4000u32 {
                let key = format!("user-{}", i % 500);
                let r = http.get(&url, &[("x-user-id", &key)]).await;
                assert_eq!(r.status, StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let driver = Driver::start(&chromedriver);
    let profile = std::env::temp_dir().join(format!("ringproxy-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,1100",
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session in headless Chromium");

    // Run the checks, then close the browser whatever happened, then report.
    let outcome = tokio::spawn({
        let client = client.clone();
        async move { exercise(&client, &p).await }
    })
    .await;
    let _ = client.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    traffic.abort();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn exercise(c: &Client, p: &TestProxy) {
    c.goto(&p.admin_url("/status"))
        .await
        .expect("open the page");
    assert_eq!(c.title().await.unwrap(), "ringproxy status");

    // The first call answers 401: the page asks for the token, once.
    let input = c
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#auth:not([hidden]) #token-input"))
        .await
        .expect("the page asks for the token");
    assert_eq!(
        count(c, "#backends tbody tr").await,
        0,
        "nothing shown before the token"
    );
    input.send_keys(TOKEN).await.unwrap();
    c.find(Locator::Css("#token-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Every backend, with its state, as the admin API says.
    let backends = admin(p, Method::GET, "/backends", "").await;
    let list = backends["backends"].as_array().unwrap().clone();
    eventually("a table row per backend", || async {
        (count(c, "#backends tbody tr[data-backend]").await == list.len()).then_some(())
    })
    .await;
    for b in &list {
        let id = b["id"].as_str().unwrap();
        let row = format!("#backends tbody tr[data-backend=\"{id}\"]");
        let text = c
            .find(Locator::Css(&row))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(id), "{row}: {text}");
        let state = attr(c, &format!("{row} .state"), "data-state").await;
        assert_eq!(state.as_deref(), b["state"].as_str(), "{id}");
        assert!(text.contains(b["state"].as_str().unwrap()), "{row}: {text}");
    }
    assert_eq!(list[2]["state"], "draining");

    // The ring: one arc group per backend, each with a path.
    let groups = eventually("one arc group per backend", || async {
        let groups = c.find_all(Locator::Css("#arcs .arc-group")).await.ok()?;
        (groups.len() == list.len()).then_some(groups)
    })
    .await;
    let mut drawn = Vec::new();
    for g in groups {
        drawn.push(g.attr("data-backend").await.unwrap().unwrap());
        let d = g
            .find(Locator::Css("path"))
            .await
            .unwrap()
            .attr("d")
            .await
            .unwrap();
        assert!(d.is_some_and(|d| d.starts_with("M ")), "arcs drawn");
    }
    let ids: Vec<&str> = list.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(drawn, ids);

    // The key box answers what `GET /route` answers.
    for key in ["user-42", "another key", "ключ"] {
        let input = c.find(Locator::Css("#route-key")).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(key).await.unwrap();
        c.find(Locator::Css("#route-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let shown = eventually("the key box's answer", || async {
            attr(c, "#route-result", "data-backend").await
        })
        .await;
        let route = admin(p, Method::GET, &format!("/route?key={}", encode(key)), "").await;
        assert_eq!(shown, route["backend"].as_str().unwrap(), "key {key}");
    }

    // A preview: cache-a leaves and cache-d joins; the page shows the plan's figures and draws
    // the arcs that would move.
    c.find(Locator::Css("input.leave[data-backend=\"cache-a\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#join-id"))
        .await
        .unwrap()
        .send_keys("cache-d")
        .await
        .unwrap();
    c.find(Locator::Css("#join-address"))
        .await
        .unwrap()
        .send_keys("10.0.0.9:11211")
        .await
        .unwrap();
    c.find(Locator::Css("#plan-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown: f64 = eventually("the preview", || async {
        attr(c, "#plan-result", "data-moved").await?.parse().ok()
    })
    .await;
    let body = json!({"leave": ["cache-a"], "join": [{"id": "cache-d", "address": "10.0.0.9:11211", "weight": 1}]});
    let planned = admin(p, Method::POST, "/ring/plan", &body.to_string()).await;
    assert_eq!(shown, planned["moved"].as_f64().unwrap());
    assert!(
        count(c, "#moved path.moved-arcs").await >= 1,
        "moved arcs drawn"
    );
    assert_eq!(
        admin(p, Method::GET, "/ring", "").await["version"],
        1,
        "a preview changes nothing"
    );

    // Let the live figures fill in, then keep a picture for people.
    eventually("request rates", || async {
        let text = c
            .find(Locator::Css("#backends tbody"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(" ms").then_some(())
    })
    .await;
    let png = c.screenshot().await.expect("screenshot");
    let path = target_dir().join("status-page.png");
    let _ = std::fs::create_dir_all(target_dir());
    std::fs::write(&path, png).unwrap();
    eprintln!("status page screenshot: {}", path.display());
}
