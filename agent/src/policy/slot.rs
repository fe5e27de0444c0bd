//! [`PolicySlot`]: the policy set in force, replaced as a whole when the policy file is read
//! again (SIGHUP). A session takes the set in force when it starts and keeps it to its end;
//! sessions started after a reload get the new set.

use std::sync::{Arc, PoisonError, RwLock};

use super::PolicyEngine;

/// The current [`PolicyEngine`], swappable atomically.
#[derive(Debug)]
pub struct PolicySlot {
    current: RwLock<Arc<PolicyEngine>>,
}

impl PolicySlot {
    /// A slot holding `engine`.
    pub fn new(engine: Arc<PolicyEngine>) -> PolicySlot {
        PolicySlot {
            current: RwLock::new(engine),
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<PolicyEngine> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `engine` in force for sessions that start from now on.
    pub fn replace(&self, engine: Arc<PolicyEngine>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = engine;
    }
}
