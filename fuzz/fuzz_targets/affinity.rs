//! `cargo +nightly fuzz run affinity`: see `ringproxy_fuzz::affinity` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringproxy_fuzz::affinity(data));
