//! The jitgate audit protocol, package `jitgate.audit.v1` (`proto/audit.proto`): events the agent
//! streams to the collector, acknowledgements, and the collector's query API.
#![allow(missing_docs, reason = "generated code")]

/// Generated messages and services of `jitgate.audit.v1`.
pub mod audit {
    /// Version 1 of the audit protocol.
    pub mod v1 {
        tonic::include_proto!("jitgate.audit.v1");
    }
}
