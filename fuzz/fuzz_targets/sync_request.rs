//! Fuzz target `sync_request`: see `gridsync_tests::fuzz_sync_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsync_tests::fuzz_sync_request(data));
