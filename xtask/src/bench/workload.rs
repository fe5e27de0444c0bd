//! The benchmark's data and workloads: two tables created in the shop database before the agent
//! starts (owned by the upstream role), the masked column, and the pgbench custom scripts.
//!
//! `bench_accounts` is pgbench's `pgbench_accounts` shape (100k rows, primary-key lookups: the
//! `-S` transaction); `bench_wide` holds 10k rows of six text-format columns and is read whole by
//! the wide-result workload, with `email` masked by the agent; `bench_wide_plain` is a copy with
//! no masked column, read by the same query to show the cost of masking.

use jitgate_tests::stack::CI_ROLE;

/// Rows of `bench_accounts`.
pub const ACCOUNTS: u32 = 100_000;
/// Rows of `bench_wide`, all returned by one wide-result query.
pub const WIDE_ROWS: u32 = 10_000;
/// The one masked column (TOML inline table of the agent's `masks`).
pub const MASK: &str =
    r#"{ column = "public.bench_wide.email", strategy = "partial", keep_first = 1 }"#;

/// Wire protocol pgbench uses (`-M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Query messages.
    Simple,
    /// Parse/Bind/Describe/Execute/Sync with the unnamed statement each time.
    Extended,
}

impl Protocol {
    /// pgbench's `-M` value.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Extended => "extended",
        }
    }
}

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `SELECT abalance FROM bench_accounts WHERE aid = :aid` (pgbench's select-only).
    SelectOne,
    /// `SELECT * FROM bench_wide`: 10k rows, one masked column.
    Wide,
    /// The same rows from `bench_wide_plain`, which has no masked column: the agent relays
    /// them, so the pair shows what masking costs.
    WidePlain,
}

impl Script {
    /// The pgbench script file's text.
    pub fn text(self) -> String {
        match self {
            Self::SelectOne => format!(
                "\\set aid random(1, {ACCOUNTS})\n\
                 SELECT abalance FROM bench_accounts WHERE aid = :aid;\n"
            ),
            Self::Wide => "SELECT id, name, email, city, note, tag FROM bench_wide;\n".to_owned(),
            Self::WidePlain => {
                "SELECT id, name, email, city, note, tag FROM bench_wide_plain;\n".to_owned()
            }
        }
    }

    /// File name of the script in the bench's temp dir.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::SelectOne => "select-one.sql",
            Self::Wide => "wide.sql",
            Self::WidePlain => "wide-plain.sql",
        }
    }
}

/// One pgbench configuration, run against every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Short name for tables and progress lines.
    pub name: &'static str,
    /// The transaction.
    pub script: Script,
    /// `-M`.
    pub protocol: Protocol,
    /// `-c`.
    pub clients: u32,
    /// `-C`: a new connection per transaction.
    pub connect_per_transaction: bool,
}

impl Workload {
    /// `-j`: one thread per client up to the machine's two cores.
    pub fn threads(&self) -> u32 {
        self.clients.min(2)
    }

    /// Whether the statement is the same text every time (parse cached by the agent).
    pub fn cached_statement(&self) -> bool {
        self.script == Script::SelectOne && !self.connect_per_transaction
    }
}

/// Every workload of the issue, in run order.
pub const WORKLOADS: [Workload; 7] = [
    Workload {
        name: "select simple c1",
        script: Script::SelectOne,
        protocol: Protocol::Simple,
        clients: 1,
        connect_per_transaction: false,
    },
    Workload {
        name: "select extended c1",
        script: Script::SelectOne,
        protocol: Protocol::Extended,
        clients: 1,
        connect_per_transaction: false,
    },
    Workload {
        name: "select simple c8",
        script: Script::SelectOne,
        protocol: Protocol::Simple,
        clients: 8,
        connect_per_transaction: false,
    },
    Workload {
        name: "select extended c8",
        script: Script::SelectOne,
        protocol: Protocol::Extended,
        clients: 8,
        connect_per_transaction: false,
    },
    Workload {
        name: "wide 10k rows c1",
        script: Script::Wide,
        protocol: Protocol::Simple,
        clients: 1,
        connect_per_transaction: false,
    },
    Workload {
        name: "wide unmasked 10k rows c1",
        script: Script::WidePlain,
        protocol: Protocol::Simple,
        clients: 1,
        connect_per_transaction: false,
    },
    Workload {
        name: "connect -C c1",
        script: Script::SelectOne,
        protocol: Protocol::Simple,
        clients: 1,
        connect_per_transaction: true,
    },
];

/// SQL creating and filling the bench tables, run as the superuser in the shop database.
pub fn setup_sql() -> String {
    format!(
        "CREATE TABLE bench_accounts (aid int PRIMARY KEY, abalance int NOT NULL, filler text NOT NULL);\n\
         INSERT INTO bench_accounts SELECT g, 0, repeat('x', 84) FROM generate_series(1, {ACCOUNTS}) g;\n\
         CREATE TABLE bench_wide (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL,\n\
           city text NOT NULL, note text NOT NULL, tag text NOT NULL);\n\
         INSERT INTO bench_wide SELECT g, 'customer name ' || g, 'user' || g || '@example.com',\n\
           'city ' || (g % 500) || ' district', md5(g::text) || md5((g * 7)::text), 'tag-' || (g % 13)\n\
           FROM generate_series(1, {WIDE_ROWS}) g;\n\
         ALTER TABLE bench_accounts OWNER TO {CI_ROLE};\n\
         CREATE TABLE bench_wide_plain AS SELECT * FROM bench_wide;\n\
         ALTER TABLE bench_wide OWNER TO {CI_ROLE};\n\
         ALTER TABLE bench_wide_plain OWNER TO {CI_ROLE};\n\
         VACUUM ANALYZE bench_wide_plain;\n\
         VACUUM ANALYZE bench_accounts;\n\
         VACUUM ANALYZE bench_wide;\n"
    )
}

/// SQL returning the DataRow bytes of one wide-result query in text format: per row the 7-byte
/// message header and column count, and per value a 4-byte length plus the text.
pub fn wide_bytes_sql() -> &'static str {
    "SELECT sum(7 + 6 * 4 + octet_length(id::text) + octet_length(name) + octet_length(email)\n\
       + octet_length(city) + octet_length(note) + octet_length(tag)) FROM bench_wide;\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_cover_the_issue() {
        assert!(WORKLOADS.iter().any(|w| w.connect_per_transaction));
        assert!(WORKLOADS.iter().any(|w| w.script == Script::Wide));
        for clients in [1, 8] {
            for protocol in [Protocol::Simple, Protocol::Extended] {
                assert!(WORKLOADS.iter().any(|w| w.clients == clients
                    && w.protocol == protocol
                    && w.cached_statement()));
            }
        }
        assert!(Script::SelectOne.text().contains(":aid"));
    }
}
