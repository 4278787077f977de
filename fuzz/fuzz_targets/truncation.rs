//! Fuzzes `embedrt_testkit::untrusted::truncation`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| embedrt_testkit::untrusted::truncation(data));
