//! Fuzz target `judge`: structure-aware pushes built from real documents, judged by the
//! server's `push::decide`; see `tests/tests/support/judge.rs` (shared with the replay in
//! `tests/tests/fuzz_regressions.rs`).
#![no_main]

// `judge_seeds` is used by the replay only.
#[allow(dead_code)]
#[path = "../../tests/tests/support/judge.rs"]
mod judge;

libfuzzer_sys::fuzz_target!(|data: &[u8]| judge::fuzz_judge(data));
