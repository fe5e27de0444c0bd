//! jitgate test harness.
