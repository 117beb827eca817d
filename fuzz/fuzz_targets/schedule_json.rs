//! Fuzz target: see `wgpu_optim::tooling::fuzz::schedule_json` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wgpu_optim::tooling::fuzz::schedule_json(data));
