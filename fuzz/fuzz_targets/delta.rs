#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pbackend::testkit::fuzz::delta(data));
