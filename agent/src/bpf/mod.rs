//! Kernel redirect.
