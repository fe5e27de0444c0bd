//! `cargo xtask test`: everything CI checks, in order, with a summary of what failed.
//!
//! 1. setup, only when [`setup::check`] finds something missing;
//! 2. `cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings`;
//! 3. unit tests (`cargo test --workspace`, minus the root integration test binaries), then
//!    each fuzz target for a bounded time ([`fuzz::TEST_SECONDS`]; skipped without cargo-fuzz);
//! 4. build the binaries ([`build::binaries`]) and run the root integration tests
//!    (`cargo test -p jitgate-tests --no-fail-fast -- --test-threads=1`) with `JITGATE_*_BIN`
//!    pointing at them; among them `collector_postgres`, the collector's storage suite on a
//!    real PostgreSQL.
//!
//! Independent steps all run even when one fails, so one run reports every problem. Without
//! root the integration tests are skipped, loudly; `--require-root` makes that a failure.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::build::{self, Binaries};
use crate::{fuzz, setup, step};

/// How one step ended.
#[derive(Debug)]
enum Outcome {
    /// The step succeeded.
    Passed(Duration),
    /// The step failed; the error says how.
    Failed(anyhow::Error),
    /// The step did not run; the reason says why.
    Skipped(String),
}

/// Step names and outcomes, in the order run.
#[derive(Debug, Default)]
struct Report {
    steps: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// Runs `body` as step `name` and records its outcome; returns its value when it passed.
    fn step<T>(
        &mut self,
        name: &'static str,
        body: impl FnOnce() -> anyhow::Result<T>,
    ) -> Option<T> {
        let start = Instant::now();
        match body() {
            Ok(value) => {
                self.steps.push((name, Outcome::Passed(start.elapsed())));
                Some(value)
            }
            Err(error) => {
                step::note(&format!("✗ {name}: {error:#}"));
                self.steps.push((name, Outcome::Failed(error)));
                None
            }
        }
    }

    fn skip(&mut self, name: &'static str, reason: String) {
        step::note(&format!("\n!!! SKIPPED {name}: {reason}"));
        self.steps.push((name, Outcome::Skipped(reason)));
    }

    fn failed(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .filter(|(_, outcome)| matches!(outcome, Outcome::Failed(_)))
            .map(|(name, _)| *name)
            .collect()
    }

    fn print(&self) {
        step::note("\n==> summary");
        for (name, outcome) in &self.steps {
            match outcome {
                Outcome::Passed(elapsed) => step::note(&format!("  ✓ {name} ({elapsed:.1?})")),
                Outcome::Failed(error) => {
                    let first = format!("{error:#}");
                    let first = first.lines().next().unwrap_or_default().to_owned();
                    step::note(&format!("  ✗ {name}: {first}"));
                }
                Outcome::Skipped(reason) => step::note(&format!("  - {name}: skipped ({reason})")),
            }
        }
    }
}

/// `cargo xtask test [--require-root]`.
pub fn run(require_root: bool) -> anyhow::Result<()> {
    let mut report = Report::default();
    if report.step("setup", setup::ensure).is_none() {
        report.print();
        bail!("setup failed; nothing else was run");
    }

    report.step("cargo fmt --check", || {
        step::streamed("fmt", &mut step::cargo(["fmt", "--all", "--check"]))
    });
    report.step("clippy", || {
        step::streamed(
            "clippy",
            &mut step::cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        )
    });
    // The root integration tests are jitgate-tests' test binaries: they run in the last step,
    // serially and with the binaries built; here only that crate's own unit tests run.
    report.step("unit tests", || {
        step::streamed(
            "unit tests",
            &mut step::cargo(["test", "--workspace", "--exclude", "jitgate-tests"]),
        )?;
        step::streamed(
            "harness unit tests",
            &mut step::cargo(["test", "--package", "jitgate-tests", "--lib"]),
        )
    });

    match fuzz::unavailable() {
        Some(reason) => report.skip("fuzz", reason),
        None => {
            report.step("fuzz", || fuzz::fuzz(&fuzz::TARGETS, fuzz::TEST_SECONDS));
        }
    }

    let bins = report.step("build binaries", || build::binaries(false));
    match bins {
        None => report.skip("root integration tests", "the build failed".into()),
        Some(_) if !step::is_root() => report.skip(
            "root integration tests",
            "not running as root; run `sudo -E cargo xtask test` (or as root) to include them"
                .into(),
        ),
        Some(bins) => {
            report.step("root integration tests", || root_tests(&bins));
        }
    }

    report.print();
    let failed = report.failed();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    if require_root && !step::is_root() {
        bail!("--require-root given but not running as root: root integration tests skipped");
    }
    Ok(())
}

fn root_tests(bins: &Binaries) -> anyhow::Result<()> {
    let mut command = step::cargo([
        "test",
        "--package",
        "jitgate-tests",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]);
    bins.export_to(&mut command);
    step::streamed("root integration tests", &mut command)
}
