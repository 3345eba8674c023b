//! Test harness shared by the black-box tests: scripted backends on 127.0.0.1:0, an in-process
//! ringproxy bound to port 0, a small HTTP client, a raw-TCP helper, raw client connections and
//! a recording (and upgrading) backend for hostile-client tests, a scriptable DNS server, a real
//! nginx to compare with, expected routing computed with the proxy's own `Ring`, temp files,
//! and the suite-wide switches of the proxy's paths (`RINGPROXY_TEST_HTTP1`, `RINGPROXY_TEST_IO`; see
//! `suite.rs`).
#![allow(dead_code)]

mod backend;
mod client;
mod dns;
mod nginx;
mod process;
mod proxy;
mod raw;
mod ring;
mod suite;

// Not every test binary uses every part.
#[allow(unused_imports)]
pub use backend::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use dns::*;
#[allow(unused_imports)]
pub use nginx::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use ring::*;
#[allow(unused_imports)]
pub use suite::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Polls `cond` every 5 ms until it holds; panics with `what` if it still does not after
/// `within`. Tests wait for a condition this way instead of sleeping and hoping the machine was
/// fast enough; `within` is generous because it only matters when something is broken.
pub async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} (waited {within:?})");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A file under the temp dir, removed on drop.
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, contents: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "ringproxy-test-{}-{tag}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
