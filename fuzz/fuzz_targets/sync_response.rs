//! Fuzz target `sync_response`: see `gridsync_tests::fuzz_sync_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsync_tests::fuzz_sync_response(data));
