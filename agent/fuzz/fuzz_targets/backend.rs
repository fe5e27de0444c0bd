//! libFuzzer entry point for the `backend` target; the driver is [`jitgate_agent_fuzz::backend`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jitgate_agent_fuzz::backend(data));
