//! Fuzz target `grids_csv`: see `gridsync_tests::fuzz_grids_csv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gridsync_tests::fuzz_grids_csv(data));
