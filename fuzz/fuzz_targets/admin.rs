//! `cargo +nightly fuzz run admin`: see `ringproxy_fuzz::admin` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringproxy_fuzz::admin(data));
