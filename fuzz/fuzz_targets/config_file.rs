//! Fuzzes `embedrt_testkit::untrusted::config_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| embedrt_testkit::untrusted::config_file(data));
