//! Fuzz target `push`: see `gridsync_tests::fuzz_push`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsync_tests::fuzz_push(data));
