//! `cargo +nightly fuzz run config`: see `ringproxy_fuzz::config` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringproxy_fuzz::config(data));
