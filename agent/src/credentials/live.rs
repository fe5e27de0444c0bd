//! The session roles this agent created and has not dropped yet, shared by every target's
//! broker and the reaper, so the reaper never takes a live session's role and a role is dropped
//! by one task only.

use std::collections::HashMap;
use std::sync::Mutex;

/// Where a role stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its session may be using it.
    Live,
    /// A task is dropping it.
    Dropping,
}

/// One role's entry.
#[derive(Debug, Clone)]
struct Entry {
    state: State,
    target: String,
    database: String,
}

/// The registry (one per agent).
#[derive(Debug, Default)]
pub struct LiveRoles {
    roles: Mutex<HashMap<String, Entry>>,
}

impl LiveRoles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a plain map behind: still usable.
        self.roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `role` as live for a session of `target` in `database`, before it is created.
    pub fn insert(&self, role: &str, target: &str, database: &str) {
        self.lock().insert(
            role.to_owned(),
            Entry {
                state: State::Live,
                target: target.to_owned(),
                database: database.to_owned(),
            },
        );
    }

    /// Whether `role` is known (live or being dropped).
    pub fn contains(&self, role: &str) -> bool {
        self.lock().contains_key(role)
    }

    /// Claims `role` for dropping: true when the caller should drop it (it was live, or not
    /// known at all); false when another task is already dropping it.
    pub fn claim(&self, role: &str, target: &str, database: &str) -> bool {
        let mut roles = self.lock();
        match roles.get_mut(role) {
            Some(entry) if entry.state == State::Dropping => false,
            Some(entry) => {
                entry.state = State::Dropping;
                true
            }
            None => {
                roles.insert(
                    role.to_owned(),
                    Entry {
                        state: State::Dropping,
                        target: target.to_owned(),
                        database: database.to_owned(),
                    },
                );
                true
            }
        }
    }

    /// Forgets `role` once a drop was attempted (what failed is left to the reaper).
    pub fn remove(&self, role: &str) {
        self.lock().remove(role);
    }

    /// The live roles of `target`, with their databases.
    pub fn live_of(&self, target: &str) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.state == State::Live && e.target == target)
            .map(|(name, e)| (name.clone(), e.database.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_is_claimed_once() {
        let live = LiveRoles::default();
        live.insert("r", "t", "db");
        assert_eq!(live.live_of("t"), vec![("r".into(), "db".into())]);
        assert!(live.claim("r", "t", "db"));
        assert!(!live.claim("r", "t", "db"));
        assert!(live.live_of("t").is_empty());
        live.remove("r");
        assert!(!live.contains("r"));
        assert!(
            live.claim("other", "t", "db"),
            "unknown roles may be claimed"
        );
    }
}
