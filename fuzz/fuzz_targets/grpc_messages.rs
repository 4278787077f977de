//! Fuzzes `embedrt_testkit::untrusted::grpc_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| embedrt_testkit::untrusted::grpc_messages(data));
