//! A PostgreSQL database for the collector on a [`PgServer`]: a login role (SCRAM-SHA-256,
//! random password) owning a database of the same name, the password in an owner-only file,
//! and the `jitgate-collector` arguments that use them.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::TempDir;

use crate::postgres::{PasswordAuth, PgServer};
use crate::shop::quote_ident;

/// The collector's database and role; the password file is removed on Drop (the database goes
/// with its server).
#[derive(Debug)]
pub struct CollectorDb {
    url: String,
    password_file: PathBuf,
    _dir: TempDir,
}

impl CollectorDb {
    /// Creates role `name` (LOGIN, random password) and database `name` owned by it on `pg`.
    pub fn create(pg: &PgServer, name: &str) -> anyhow::Result<Self> {
        let password = format!(
            "collector-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        pg.create_role(name, &password, PasswordAuth::Scram)?;
        pg.psql_superuser(&format!(
            "CREATE DATABASE {0} OWNER {0};\n",
            quote_ident(name)
        ))?;
        let dir = tempfile::Builder::new()
            .prefix("jitgate-collector-db-")
            .tempdir()
            .context("creating the password file's temp dir")?;
        let password_file = dir.path().join("db.password");
        std::fs::write(&password_file, format!("{password}\n"))?;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            url: format!(
                "postgres://{name}@{}:{}/{name}?sslmode=disable",
                pg.host(),
                pg.port()
            ),
            password_file,
            _dir: dir,
        })
    }

    /// `postgres://NAME@127.0.0.1:PORT/NAME?sslmode=disable` (plaintext on loopback; no
    /// password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The owner-only file holding the role's password.
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// `--db URL --db-password-file PATH` for `jitgate-collector`.
    pub fn args(&self) -> Vec<OsString> {
        vec![
            "--db".into(),
            self.url.clone().into(),
            "--db-password-file".into(),
            self.password_file.clone().into(),
        ]
    }
}
