//! libFuzzer entry point for the `analyze` target; the driver is [`jitgate_agent_fuzz::analyze`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jitgate_agent_fuzz::analyze(data));
