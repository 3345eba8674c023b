//! Test harness shared by the black-box tests: scripted backends on 127.0.0.1:0, an in-process
//! ringproxy bound to port 0, a small HTTP client, a raw-TCP helper, expected routing computed
//! with the proxy's own `Ring`, a real nginx to compare with, and temp files.
#![allow(dead_code)]

mod backend;
mod client;
mod nginx;
mod proxy;
mod ring;

// Not every test binary uses every part.
#[allow(unused_imports)]
pub use backend::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use nginx::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use ring::*;

use std::sync::atomic::{AtomicUsize, Ordering};

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
