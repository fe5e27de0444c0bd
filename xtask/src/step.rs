//! Running the external commands of a multi-step flow with visible progress.
//!
//! Two modes: [`captured`] shows an indicatif spinner with the command being run and its latest
//! output line, and quotes the output's tail only when the command fails (installs, builds);
//! [`streamed`] prints a header and lets the command write to the terminal directly (fmt,
//! clippy, tests — whose output is the point). Without a terminal (CI logs) the spinner is
//! hidden, so start and end lines are printed plainly instead.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// Lines of output quoted when a captured command fails.
const FAILURE_TAIL_LINES: usize = 60;

/// The workspace root (parent of xtask's manifest directory); cargo commands run there.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A `cargo` command (the one running xtask, from `$CARGO`) in the workspace root.
pub fn cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.args(args).current_dir(workspace_root());
    // `cargo run` gave xtask the variables of its own package; passed on, build scripts that
    // read them (ring's reads CARGO_MANIFEST_DIR) would look changed and rebuild every time.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text == "CARGO_MANIFEST_DIR"
            || key_text == "CARGO_MANIFEST_PATH"
            || key_text == "CARGO_PRIMARY_PACKAGE"
            || key_text.starts_with("CARGO_PKG_")
            || key_text.starts_with("CARGO_BIN_")
            || key_text == "CARGO_CRATE_NAME"
        {
            command.env_remove(&key);
        }
    }
    command
}

/// `command` as a shell-like line, with the environment it sets in front (`RUSTFLAGS=.. cargo ..`).
pub fn display(command: &Command) -> String {
    let mut parts: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| {
            value.map(|v| format!("{}={}", key.to_string_lossy(), quote(&v.to_string_lossy())))
        })
        .collect();
    let program = Path::new(command.get_program());
    let name = program.file_name().unwrap_or(program.as_os_str());
    parts.push(name.to_string_lossy().into_owned());
    parts.extend(command.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

fn quote(word: &str) -> String {
    if !word.is_empty() && !word.contains([' ', '\'', '"', '$', '*']) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints a line that the user should see whatever the terminal.
pub fn note(message: &str) {
    eprintln!("{message}");
}

/// Reports a step that needs nothing done.
pub fn skip(title: &str, reason: &str) {
    note(&format!("✓ {title}: {reason}"));
}

/// Runs `command` behind a spinner titled `title`; returns its stdout.
///
/// The spinner shows the command line and the latest output line. On failure the error quotes
/// the last [`FAILURE_TAIL_LINES`] lines of combined output.
pub fn captured(title: &str, command: &mut Command) -> anyhow::Result<String> {
    let line = display(command);
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(title.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    if is_tty() {
        bar.println(format!("→ {title}: $ {line}"));
    } else {
        note(&format!("→ {title}: $ {line}"));
    }
    bar.set_message(line.clone());

    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{title}: starting `{line}`"))?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().context("child stdout")?;
    let err = child.stderr.take().context("child stderr")?;
    let readers = [forward(out, true, tx.clone()), forward(err, false, tx)];

    let mut stdout = String::new();
    let mut tail = VecDeque::with_capacity(FAILURE_TAIL_LINES);
    for (is_stdout, text) in rx {
        if is_stdout {
            stdout.push_str(&text);
            stdout.push('\n');
        } else {
            bar.set_message(text.clone());
        }
        if tail.len() == FAILURE_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child
        .wait()
        .with_context(|| format!("{title}: waiting for `{line}`"))?;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    if !status.success() {
        note(&format!("✗ {title} ({status}, {elapsed:.1?})"));
        let tail: Vec<String> = tail.into();
        bail!(
            "{title}: `{line}` failed ({status}); last output:\n{}",
            tail.join("\n")
        );
    }
    note(&format!("✓ {title} ({elapsed:.1?})"));
    Ok(stdout)
}

/// Runs `command` with the terminal as its stdio, after a header line; errors if it fails.
pub fn streamed(title: &str, command: &mut Command) -> anyhow::Result<()> {
    let line = display(command);
    note(&format!("\n==> {title}: $ {line}"));
    let start = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("{title}: starting `{line}`"))?;
    let elapsed = start.elapsed();
    if !status.success() {
        note(&format!("✗ {title} ({status}, {elapsed:.1?})"));
        bail!("`{line}` failed ({status})");
    }
    note(&format!("✓ {title} ({elapsed:.1?})"));
    Ok(())
}

/// Runs a quick query command (version checks, dpkg-query) and returns its stdout, or `None`
/// when it cannot be started or fails. No progress display: these take milliseconds.
pub fn probe(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`probe`] but keeps stdout even when the command exits non-zero (dpkg-query exits 1
/// when some of the packages asked about are unknown, yet reports the others).
pub fn probe_any_status(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn forward<R: Read + Send + 'static>(
    reader: R,
    is_stdout: bool,
    tx: mpsc::Sender<(bool, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send((is_stdout, line)).is_err() {
                break;
            }
        }
    })
}

/// Whether xtask runs as root (Debian installs and the root integration tests need it).
pub fn is_root() -> bool {
    jitgate_tests::process::is_root()
}

/// The first `name` executable on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_and_quotes() {
        let mut command = Command::new("/usr/bin/cargo");
        command.env("RUSTFLAGS", "-L /x").args(["install", "a b"]);
        assert_eq!(display(&command), "RUSTFLAGS='-L /x' cargo install 'a b'");
    }

    #[test]
    fn captured_returns_stdout_and_quotes_failures() -> anyhow::Result<()> {
        let out = captured(
            "echo",
            Command::new("sh").args(["-c", "echo hi; echo warn >&2"]),
        )?;
        assert_eq!(out, "hi\n");
        let error = captured(
            "fail",
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
        )
        .expect_err("exit 3");
        assert!(format!("{error:#}").contains("boom"), "{error:#}");
        Ok(())
    }
}
