//! The catalogue of dangerous functions and statements: features that reach past the tables a
//! statement names (the server's file system, other servers, other sessions, arbitrary SQL
//! text, procedural code, privileges). Each has a stable name policies test with
//! `context.dangerous.contains("…")`; functions also carry theirs as the Function resource's
//! `category`.
//!
//! Functions are matched by name whatever the schema (a same-named function in another schema
//! counts too: it can only deny more). Sources: PostgreSQL docs §9.27 (System Administration
//! Functions), §35 (Large Objects), F.11 (dblink), F.1 (adminpack), §9.15.4 (XML: query_to_xml).

use super::access::QualifiedName;

/// `COPY … TO/FROM PROGRAM`: runs a shell command on the database server.
pub const COPY_PROGRAM: &str = "copy_program";
/// `COPY … TO/FROM 'file'`: reads or writes a file on the database server.
pub const SERVER_FILE: &str = "server_file";
/// `ALTER SYSTEM`: changes the server's configuration file.
pub const ALTER_SYSTEM: &str = "alter_system";
/// `SET ROLE` / `SET SESSION AUTHORIZATION`: acts as another role.
pub const SET_ROLE: &str = "set_role";
/// `DO`: anonymous procedural code the parser cannot see into.
pub const DO_BLOCK: &str = "do_block";
/// `CREATE [OR REPLACE] FUNCTION / PROCEDURE`: code that later runs with its own rights.
pub const CREATE_FUNCTION: &str = "create_function";
/// `LOAD`: loads a shared library into the backend.
pub const LOAD_LIBRARY: &str = "load_library";
/// `CREATE EXTENSION`: installs code and objects.
pub const CREATE_EXTENSION: &str = "create_extension";
/// SQL-level `PREPARE` / `EXECUTE`: text decided once, run later by name.
pub const PREPARED_SQL: &str = "prepared_sql";

/// Function categories.
pub const READ_SERVER_FILE: &str = "read_server_file";
/// Writing or renaming server files (adminpack).
pub const WRITE_SERVER_FILE: &str = "write_server_file";
/// Large objects, including `lo_import`/`lo_export` of server files.
pub const LARGE_OBJECT: &str = "large_object";
/// Connections to other servers (dblink).
pub const REMOTE_CONNECTION: &str = "remote_connection";
/// Signalling other backends or the postmaster.
pub const SIGNAL_BACKEND: &str = "signal_backend";
/// Changing settings from inside a query.
pub const SETTINGS: &str = "settings";
/// Functions that run SQL given as text (their tables are invisible to analysis).
pub const DYNAMIC_SQL: &str = "dynamic_sql";
/// Replication slots and WAL messages.
pub const REPLICATION: &str = "replication";

const FUNCTIONS: &[(&str, &[&str])] = &[
    (
        READ_SERVER_FILE,
        &[
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "pg_stat_file",
            "pg_ls_logdir",
            "pg_ls_waldir",
            "pg_ls_tmpdir",
            "pg_ls_archive_statusdir",
            "pg_ls_logicalsnapdir",
            "pg_ls_logicalmapdir",
            "pg_ls_replslotdir",
            "pg_current_logfile",
        ],
    ),
    (
        WRITE_SERVER_FILE,
        &[
            "pg_file_write",
            "pg_file_rename",
            "pg_file_unlink",
            "pg_file_sync",
        ],
    ),
    (
        LARGE_OBJECT,
        &[
            "lo_import",
            "lo_export",
            "lo_creat",
            "lo_create",
            "lo_open",
            "lo_close",
            "loread",
            "lowrite",
            "lo_lseek",
            "lo_lseek64",
            "lo_tell",
            "lo_tell64",
            "lo_truncate",
            "lo_truncate64",
            "lo_unlink",
            "lo_from_bytea",
            "lo_get",
            "lo_put",
        ],
    ),
    (
        REMOTE_CONNECTION,
        &[
            "dblink",
            "dblink_exec",
            "dblink_connect",
            "dblink_connect_u",
            "dblink_send_query",
            "dblink_open",
            "dblink_fetch",
            "dblink_get_result",
        ],
    ),
    (
        SIGNAL_BACKEND,
        &[
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_reload_conf",
            "pg_rotate_logfile",
            "pg_promote",
            "pg_switch_wal",
            "pg_log_backend_memory_contexts",
        ],
    ),
    (SETTINGS, &["set_config"]),
    (
        DYNAMIC_SQL,
        &[
            "query_to_xml",
            "query_to_xmlschema",
            "query_to_xml_and_xmlschema",
            "cursor_to_xml",
            "cursor_to_xmlschema",
            "table_to_xml",
            "table_to_xmlschema",
            "table_to_xml_and_xmlschema",
            "schema_to_xml",
            "schema_to_xmlschema",
            "schema_to_xml_and_xmlschema",
            "database_to_xml",
            "database_to_xmlschema",
            "database_to_xml_and_xmlschema",
            "ts_stat",
            "ts_rewrite",
        ],
    ),
    (
        REPLICATION,
        &[
            "pg_create_logical_replication_slot",
            "pg_create_physical_replication_slot",
            "pg_logical_slot_get_changes",
            "pg_logical_slot_peek_changes",
            "pg_logical_slot_get_binary_changes",
            "pg_logical_emit_message",
            "pg_drop_replication_slot",
            "pg_replication_origin_create",
        ],
    ),
];

/// The dangerous-function category of `name`, if any.
pub fn function_category(name: &QualifiedName) -> Option<&'static str> {
    let lower = name.name.to_ascii_lowercase();
    FUNCTIONS
        .iter()
        .find(|(_, names)| names.contains(&lower.as_str()))
        .map(|(category, _)| *category)
}

/// The dangerous feature a statement node (pg_query's node name) is, if any.
pub fn statement_feature(node: &str) -> Option<&'static str> {
    Some(match node {
        "AlterSystemStmt" => ALTER_SYSTEM,
        "DoStmt" => DO_BLOCK,
        "CreateFunctionStmt" => CREATE_FUNCTION,
        "LoadStmt" => LOAD_LIBRARY,
        "CreateExtensionStmt" => CREATE_EXTENSION,
        "PrepareStmt" => PREPARED_SQL,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(schema: Option<&str>, name: &str) -> QualifiedName {
        QualifiedName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn functions_match_by_name_in_any_schema() {
        assert_eq!(
            function_category(&name(Some("pg_catalog"), "pg_read_file")),
            Some(READ_SERVER_FILE)
        );
        assert_eq!(
            function_category(&name(Some("public"), "LO_IMPORT")),
            Some(LARGE_OBJECT)
        );
        assert_eq!(function_category(&name(None, "lower")), None);
    }
}
