//! `cargo +nightly fuzz run node`: see `ringproxy_fuzz::node` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringproxy_fuzz::node(data));
