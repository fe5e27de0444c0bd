//! `cargo xtask build`: builds the `jitgate-agent`, `jitgate-collector` and `jitgate` binaries
//! and reports where cargo put them, read from `--message-format=json` (never guessed).
//!
//! The agent's build.rs compiles and embeds the eBPF programs through aya-build, so this needs
//! the nightly toolchain and bpf-linker (`cargo xtask setup`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::step;

/// Paths of the built jitgate binaries (the harness's own type, so demos and tests share it).
pub type Binaries = jitgate_tests::process::Bins;

/// `cargo xtask build [--release]`: builds and prints the binary paths.
pub fn run(release: bool) -> anyhow::Result<()> {
    let Binaries {
        agent,
        collector,
        jitgate_cli,
    } = binaries(release)?;
    println!("jitgate-agent      {}", agent.display());
    println!("jitgate-collector  {}", collector.display());
    println!("jitgate            {}", jitgate_cli.display());
    Ok(())
}

/// Builds the binaries (debug, or release when `release`) and returns their paths.
pub fn binaries(release: bool) -> anyhow::Result<Binaries> {
    let mut command = step::cargo([
        "build",
        "--package",
        "jitgate-agent",
        "--package",
        "jitgate-collector",
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        command.arg("--release");
    }
    let title = if release {
        "build binaries (release)"
    } else {
        "build binaries"
    };
    let stdout = step::captured(title, &mut command)?;
    parse_artifacts(&stdout)
}

/// Builds only the collector package's binaries (release when `release`) and returns the path
/// of each of `names`, in order (e.g. `jitgate-collector`, `jitgate-ingest-load`).
pub fn collector_binaries(release: bool, names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut command = step::cargo([
        "build",
        "--package",
        "jitgate-collector",
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        command.arg("--release");
    }
    let stdout = step::captured("build collector binaries", &mut command)?;
    names
        .iter()
        .map(|name| {
            executable_named(&stdout, name)?
                .with_context(|| format!("cargo did not report the {name} binary"))
        })
        .collect()
}

/// The executable cargo reported for the target `name`, if any.
fn executable_named(messages: &str, name: &str) -> anyhow::Result<Option<PathBuf>> {
    let mut found = None;
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let message: Value =
            serde_json::from_str(line).with_context(|| format!("cargo message {line:?}"))?;
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"].as_str() == Some(name)
            && let Some(executable) = message["executable"].as_str()
        {
            found = Some(PathBuf::from(executable));
        }
    }
    Ok(found)
}

/// Picks the three executables out of cargo's JSON messages (`reason: compiler-artifact`).
fn parse_artifacts(messages: &str) -> anyhow::Result<Binaries> {
    let mut agent = None;
    let mut collector = None;
    let mut jitgate_cli = None;
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let message: Value =
            serde_json::from_str(line).with_context(|| format!("cargo message {line:?}"))?;
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let slot = match message["target"]["name"].as_str() {
            Some("jitgate-agent") => &mut agent,
            Some("jitgate-collector") => &mut collector,
            Some("jitgate") => &mut jitgate_cli,
            _ => continue,
        };
        *slot = Some(PathBuf::from(executable));
    }
    match (agent, collector, jitgate_cli) {
        (Some(agent), Some(collector), Some(jitgate_cli)) => Ok(Binaries {
            agent,
            collector,
            jitgate_cli,
        }),
        (agent, collector, cli) => bail!(
            "cargo did not report every binary: agent {agent:?}, collector {collector:?}, \
             jitgate {cli:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_executables_from_cargo_messages() -> anyhow::Result<()> {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"jitgate_common","kind":["lib"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"jitgate-agent","kind":["bin"]},"executable":"/t/debug/jitgate-agent"}
{"reason":"compiler-artifact","target":{"name":"jitgate-collector","kind":["bin"]},"executable":"/t/debug/jitgate-collector"}
{"reason":"compiler-artifact","target":{"name":"jitgate","kind":["bin"]},"executable":"/t/debug/jitgate"}
{"reason":"build-finished","success":true}"#;
        let bins = parse_artifacts(messages)?;
        assert_eq!(bins.agent, PathBuf::from("/t/debug/jitgate-agent"));
        assert_eq!(bins.jitgate_cli, PathBuf::from("/t/debug/jitgate"));
        assert!(parse_artifacts("").is_err());
        Ok(())
    }
}
