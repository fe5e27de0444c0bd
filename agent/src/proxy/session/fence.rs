//! The client fence: bytes for the client that follow the point where a statement's audit event
//! was recorded (its CommandComplete, ErrorResponse, ReadyForQuery, …) are held until the spool
//! has committed that event, so nothing the client saw complete can be missing from the audit
//! trail after a crash.
//!
//! Positions count bytes appended to the session's client buffer since the session began.
//! Checking the fence reads a watch value (no system call); only a session whose bytes are held
//! waits, for the spool's next group commit.

use tokio::sync::watch;

/// Where the client stream must stop until a spool ticket is durable.
#[derive(Debug)]
pub struct Fence {
    /// Bytes written to the client so far.
    sent: u64,
    /// `(position, ticket)`: bytes at or beyond `position` wait for `ticket`.
    hold: Option<(u64, u64)>,
    durable: watch::Receiver<u64>,
}

impl Fence {
    /// A fence reading "committed up to ticket N" from `durable`.
    pub fn new(durable: watch::Receiver<u64>) -> Fence {
        Fence {
            sent: 0,
            hold: None,
            durable,
        }
    }

    /// Holds bytes from `position` (total bytes appended so far) until `ticket` is durable. An
    /// earlier hold still in force keeps its position and now waits for the later ticket.
    pub fn hold(&mut self, position: u64, ticket: u64) {
        self.hold = Some(match self.hold {
            Some((at, old)) => (at.min(position), old.max(ticket)),
            None => (position, ticket),
        });
    }

    /// The total bytes appended so far, given `buffered` bytes not yet written.
    pub fn appended(&self, buffered: usize) -> u64 {
        self.sent + buffered as u64
    }

    /// How many of the `buffered` bytes may be written now (releasing the hold once its ticket
    /// is durable).
    pub fn sendable(&mut self, buffered: usize) -> usize {
        match self.hold {
            None => buffered,
            Some((_, ticket)) if *self.durable.borrow() >= ticket => {
                self.hold = None;
                buffered
            }
            Some((at, _)) => usize::try_from(at.saturating_sub(self.sent))
                .unwrap_or(usize::MAX)
                .min(buffered),
        }
    }

    /// Notes `n` bytes written.
    pub fn sent(&mut self, n: usize) {
        self.sent += n as u64;
    }

    /// Waits until the held ticket is durable (pending forever without a hold). Cancel-safe.
    pub async fn released(&mut self) {
        match self.hold {
            Some((_, ticket)) => {
                if self.durable.wait_for(|n| *n >= ticket).await.is_err() {
                    // The spool is gone: nothing will become durable; hold for good.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_past_the_hold_wait_until_the_ticket_is_durable() {
        let (tx, rx) = watch::channel(0u64);
        let mut fence = Fence::new(rx);
        assert_eq!(fence.sendable(10), 10, "no hold: everything goes");
        fence.sent(4);
        // 6 bytes buffered, event recorded (ticket 3), then 5 more bytes appended.
        fence.hold(fence.appended(6), 3);
        assert_eq!(fence.sendable(11), 6, "only what came before the event");
        fence.sent(6);
        assert_eq!(fence.sendable(5), 0);
        tx.send_replace(2);
        assert_eq!(
            fence.sendable(5),
            0,
            "an earlier ticket does not release it"
        );
        tx.send_replace(3);
        assert_eq!(fence.sendable(5), 5);
    }

    #[test]
    fn a_second_hold_keeps_the_first_position_and_the_later_ticket() {
        let (tx, rx) = watch::channel(0u64);
        let mut fence = Fence::new(rx);
        fence.hold(2, 1);
        fence.hold(7, 5);
        assert_eq!(fence.sendable(10), 2);
        tx.send_replace(1);
        assert_eq!(fence.sendable(10), 2, "ticket 5 is still pending");
        tx.send_replace(5);
        assert_eq!(fence.sendable(10), 10);
    }

    #[tokio::test]
    async fn released_wakes_on_commit() {
        let (tx, rx) = watch::channel(0u64);
        let mut fence = Fence::new(rx);
        fence.hold(0, 2);
        let waiter = tokio::spawn(async move {
            fence.released().await;
            fence.sendable(1)
        });
        tokio::task::yield_now().await;
        tx.send_replace(2);
        assert_eq!(waiter.await.expect("join"), 1);
    }
}
