//! Fuzzes `embedrt_testkit::untrusted::http_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| embedrt_testkit::untrusted::http_body(data));
