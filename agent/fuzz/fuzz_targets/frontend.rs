//! libFuzzer entry point for the `frontend` target; the driver is [`jitgate_agent_fuzz::frontend`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jitgate_agent_fuzz::frontend(data));
