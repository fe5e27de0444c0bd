//! Audit delivery.
