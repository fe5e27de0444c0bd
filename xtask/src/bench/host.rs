//! The machine under the benchmark: pinning already running processes to a CPU with
//! `taskset -a -p` (every thread; children forked later inherit the mask, so pinning the
//! postmaster pins every backend it starts afterwards), and the facts recorded with the figures
//! (`nproc`, `uname`, CPU model, load average, the commit built).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// Pins every thread of `pid` to `cpu`.
pub fn pin(pid: u32, cpu: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    ensure!(status.success(), "taskset -a -p -c {cpu} {pid} failed");
    Ok(())
}

/// Pins the PostgreSQL postmaster of `data_dir` (first line of `postmaster.pid`) and its
/// current children (checkpointer, walwriter, …) to `cpu`; backends started later inherit it.
pub fn pin_postgres(data_dir: &Path, cpu: usize) -> anyhow::Result<()> {
    let pid_file = data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    let postmaster: u32 = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .with_context(|| format!("postmaster pid in {}", pid_file.display()))?;
    pin(postmaster, cpu)?;
    for child in children(postmaster)? {
        // A child may exit between listing and pinning; that is fine.
        let _ = pin(child, cpu);
    }
    Ok(())
}

/// Processes whose parent is `parent` (field 4 of `/proc/<pid>/stat`).
fn children(parent: u32) -> anyhow::Result<Vec<u32>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    Ok(found)
}

/// Number of online CPUs (`nproc`).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One markdown bullet list of machine facts: CPUs, kernel, CPU model, load average, and the
/// commit of `workspace` the binaries were built from (noting uncommitted agent changes).
pub fn facts(workspace: &Path) -> String {
    let root = workspace.display().to_string();
    let commit = command_line("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--"])
        .args(["agent", "common", "ebpf"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    let commit = if dirty {
        format!("{commit} plus uncommitted changes under agent/, common/ or ebpf/")
    } else {
        commit
    };
    let uname = command_line("uname", &["-srvm"]);
    let nproc = command_line("nproc", &[]);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "- `nproc`: {nproc}\n- `uname -srvm`: {uname}\n- CPU: {model}\n\
         - load average at start (1/5/15 min): {}\n- built from commit {commit}\n",
        load.join(" ")
    )
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC` (`date -u`).
pub fn now_utc() -> String {
    command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// First line of a command's stdout, or `unknown`.
fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_children_and_facts() -> anyhow::Result<()> {
        let mut child = Command::new("sleep").arg("5").spawn()?;
        let kids = children(std::process::id())?;
        let _ = child.kill();
        let _ = child.wait();
        assert!(kids.contains(&child.id()));
        assert!(facts(Path::new(".")).contains("`nproc`"));
        assert!(cpus() >= 1);
        Ok(())
    }
}
