//! The config parser on arbitrary text.

use ringproxy::config::Config;
use ringproxy::snapshot::Cluster;

/// `Config::parse` never panics; a config it accepts forms its ring (`Config::ring` expects
/// that) and starts a cluster: validation may not accept what start-up then refuses.
pub fn config(data: &[u8]) {
    // The file is read with `read_to_string`: text that is not UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without a message");
            return;
        }
    };
    let ring = config.ring();
    assert_eq!(
        ring.len(),
        config.backends.len(),
        "one ring member per backend"
    );
    // A state file would be read from disk; the fuzzer stays off the file system.
    if config.admin.state_file.is_none() {
        let cluster = Cluster::new(&config)
            .unwrap_or_else(|e| panic!("a validated config does not start: {e}\n{text}"));
        assert_eq!(cluster.load().backends.len(), config.backends.len());
    }
}
