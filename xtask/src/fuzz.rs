//! `cargo xtask fuzz`: the cargo-fuzz targets of `agent/fuzz` (libFuzzer, nightly), each for a
//! bounded time, with the committed seed corpus; `--capture-seeds` re-records that corpus from
//! real psql and pgbench sessions ([`capture`], [`seeds`]).
//!
//! Runs write newly found inputs to `agent/fuzz/target/corpus/<target>` (gitignored) and read
//! the committed seeds from `agent/fuzz/corpus/<target>` as a second, read-only corpus
//! directory, so fuzzing never touches tracked files. A crash leaves its input in
//! `agent/fuzz/artifacts/<target>/` and fails the run. Builds set `JITGATE_EBPF_STUB=1`: the
//! parsers need no kernel programs, so no bpf-linker either.

mod capture;
mod seeds;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::step;

/// The fuzz targets (`agent/fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 3] = ["frontend", "backend", "analyze"];
/// Seconds per target in `cargo xtask test` (three targets: about 2.5 minutes in all).
pub const TEST_SECONDS: u64 = 45;

/// `cargo xtask fuzz` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to fuzz each target (libFuzzer's `-max_total_time`).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Fuzz only this target (frontend, backend, analyze).
    #[arg(long)]
    target: Option<String>,
    /// Re-record the seed corpus from real sessions (needs root) instead of fuzzing.
    #[arg(long)]
    capture_seeds: bool,
}

/// `cargo xtask fuzz [--seconds N] [--target T] [--capture-seeds]`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args {
        seconds,
        target,
        capture_seeds,
    } = args;
    if capture_seeds {
        return write_seeds();
    }
    let targets: Vec<&str> = match target.as_deref() {
        None => TARGETS.to_vec(),
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(other) => bail!(
            "unknown fuzz target {other:?}; known: {}",
            TARGETS.join(", ")
        ),
    };
    if let Some(reason) = unavailable() {
        bail!("{reason}");
    }
    fuzz(&targets, seconds)
}

/// Builds every target once, then fuzzes each for `seconds`; fails on the first crash.
pub fn fuzz(targets: &[&str], seconds: u64) -> anyhow::Result<()> {
    step::captured("build fuzz targets", &mut cargo_fuzz("build", &[]))?;
    for target in targets {
        run_target(target, seconds)?;
    }
    Ok(())
}

/// Why fuzzing cannot run here (no nightly or no cargo-fuzz), or `None` when it can.
pub fn unavailable() -> Option<String> {
    if step::find_on_path("rustup").is_none() {
        return Some("rustup is not on PATH (the fuzz targets need the nightly toolchain)".into());
    }
    let version =
        step::probe(Command::new("rustup").args(["run", "nightly", "cargo", "fuzz", "--version"]));
    match version {
        Some(_) => None,
        None => Some(
            "cargo-fuzz or the nightly toolchain is missing; `cargo xtask setup` installs both"
                .into(),
        ),
    }
}

/// Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) unless `cargo fuzz` already runs;
/// part of `cargo xtask setup`.
pub fn install_cargo_fuzz() -> anyhow::Result<()> {
    if let Some(version) = step::probe(Command::new("cargo").args(["fuzz", "--version"])) {
        step::skip("cargo-fuzz", version.trim());
        return Ok(());
    }
    step::captured(
        "cargo-fuzz",
        Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
    )
    .map(|_| ())
}

/// `rustup run nightly cargo fuzz <subcommand> --debug-assertions <args>` in `agent/` with the
/// eBPF build stubbed. Debug assertions also turn on overflow checks, so overflow is a crash.
///
/// Through rustup rather than `$CARGO`, which is the stable cargo that runs xtask; the variables
/// cargo gave xtask itself are dropped so the fuzz crate's build sees its own.
fn cargo_fuzz(subcommand: &str, args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command
        .args([
            "run",
            "nightly",
            "cargo",
            "fuzz",
            subcommand,
            "--debug-assertions",
        ])
        .args(args)
        .current_dir(agent_dir())
        .env("JITGATE_EBPF_STUB", "1");
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name == "CARGO" || (name.starts_with("CARGO_") && name != "CARGO_HOME") {
            command.env_remove(&key);
        }
    }
    command
}

/// Fuzzes one target for `seconds`, printing libFuzzer's status lines (not each new input) and
/// its final statistics; the full log goes to `agent/fuzz/target/logs/<target>.log`.
fn run_target(target: &str, seconds: u64) -> anyhow::Result<()> {
    let fuzz_dir = agent_dir().join("fuzz");
    let work = fuzz_dir.join("target").join("corpus").join(target);
    let logs = fuzz_dir.join("target").join("logs");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    std::fs::create_dir_all(&logs)?;
    let seeds = fuzz_dir.join("corpus").join(target);
    let work_arg = work.display().to_string();
    let seeds_arg = seeds.display().to_string();
    let mut command = cargo_fuzz("run", &[target, &work_arg, &seeds_arg, "--"]);
    command.args([
        format!("-max_total_time={seconds}"),
        "-timeout=10".into(),
        "-print_final_stats=1".into(),
    ]);
    let line = step::display(&command);
    step::note(&format!("\n==> fuzz {target} for {seconds} s: $ {line}"));
    let log_path = logs.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{line}`"))?;
    let stderr = child.stderr.take().context("cargo fuzz stderr")?;
    for text in BufReader::new(stderr).lines().map_while(Result::ok) {
        writeln!(log, "{text}")?;
        if is_status(&text) {
            step::note(&format!("  {target}: {text}"));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}) after {:.0?}; the crashing input is under {} \
             and the log is {}",
            start.elapsed(),
            fuzz_dir.join("artifacts").join(target).display(),
            log_path.display()
        );
    }
    Ok(())
}

/// libFuzzer lines worth showing: start-up, the final `DONE`, statistics and any crash report
/// (not the per-input `NEW`/`REDUCE`/`pulse` lines, new-function notes, the recommended
/// dictionary, nor cargo's lock waits and the eBPF stub warning).
fn is_status(line: &str) -> bool {
    let progress = ["NEW", "REDUCE", "pulse", "RELOAD"]
        .iter()
        .any(|word| line.starts_with('#') && line.contains(word));
    let dictionary = line.starts_with("######") || line.contains("# Uses:");
    let noise = [
        "NEW_FUNC",
        "Blocking waiting",
        "EMPTY eBPF object",
        "INFO: Loaded",
    ]
    .iter()
    .any(|word| line.contains(word));
    !progress && !dictionary && !noise && !line.starts_with("MS:")
}

/// Captures sessions and replaces `agent/fuzz/corpus/<target>/` with their seeds.
fn write_seeds() -> anyhow::Result<()> {
    let sessions = capture::sessions()?;
    let corpus = seeds::corpus(&sessions);
    let root = agent_dir().join("fuzz").join("corpus");
    let mut total = 0;
    for (target, files) in &corpus {
        let dir = root.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        for (name, content) in files {
            std::fs::write(dir.join(name), content)?;
            total += content.len();
        }
        step::note(&format!("{target}: {} seeds", files.len()));
    }
    step::note(&format!(
        "{} sessions captured; {total} bytes of seeds under {}",
        sessions.len(),
        root.display()
    ));
    Ok(())
}

fn agent_dir() -> PathBuf {
    step::workspace_root().join("agent")
}
