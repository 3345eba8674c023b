//! Replays the committed seed corpus through each harness: a stable `cargo test` keeps the
//! harnesses compiling and the seeds passing without libFuzzer.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn config_seeds() {
    replay("config", crate::config);
}

#[test]
fn affinity_seeds() {
    replay("affinity", crate::affinity);
}

#[test]
fn node_seeds() {
    replay("node", crate::node);
}

#[test]
fn admin_seeds() {
    replay("admin", crate::admin);
}
