//! Fuzz target `enrol_json`: see `gridsync_tests::fuzz_enrol_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsync_tests::fuzz_enrol_json(data));
