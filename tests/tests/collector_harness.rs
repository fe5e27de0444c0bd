//! Integration test of [`CollectorGuard`] against the real `jitgate-collector` binary: it starts
//! on an ephemeral port, answers TCP connections at the URL it reported, and is gone after Drop.
//! Needs no root, only the built binary (`JITGATE_COLLECTOR_BIN`, set by `cargo xtask test`).

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use jitgate_tests::collector::CollectorGuard;
use jitgate_tests::process::bins;

#[test]
fn collector_guard_starts_listens_and_cleans_up() {
    let bin = bins().collector;
    assert!(
        bin.exists(),
        "{} missing: build it (`cargo xtask build`) or set JITGATE_COLLECTOR_BIN",
        bin.display()
    );
    let collector = CollectorGuard::start(&bin).expect("starting the collector");
    assert!(
        collector.url().starts_with("https://127.0.0.1:"),
        "{}",
        collector.url()
    );
    TcpStream::connect_timeout(&collector.addr(), Duration::from_secs(5))
        .expect("the collector accepts TCP connections");

    let pid = collector.pid();
    let db = collector.db_path();
    assert!(db.exists(), "the collector created {}", db.display());
    drop(collector);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "collector pid {pid} reaped"
    );
    assert!(!db.exists(), "the temp dir is removed on drop");
}
