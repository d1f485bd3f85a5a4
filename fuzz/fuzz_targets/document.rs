//! Fuzz target `document`: see `gridsync_tests::fuzz_document`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsync_tests::fuzz_document(data));
