//! The jitgate audit protocol, package `jitgate.audit.v1`: events the agent streams to the
//! collector, acknowledgements and the collector's query API (`proto/audit.proto`), and the
//! `Approvals` service (`proto/approvals.proto`).

pub mod chain;

/// Generated messages and services of `jitgate.audit.v1`.
pub mod audit {
    /// Version 1 of the audit protocol.
    #[allow(missing_docs, reason = "generated code")]
    #[allow(
        clippy::large_enum_variant,
        reason = "generated oneof `event::Kind`; events are built once and moved, boxing buys nothing"
    )]
    pub mod v1 {
        tonic::include_proto!("jitgate.audit.v1");
    }
}
