//! The spool against real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

async fn committed(spool: &Spool, ticket: u64) {
    let mut durable = spool.durable();
    durable
        .wait_for(|n| *n >= ticket)
        .await
        .expect("writer alive");
}

fn bodies(rows: &[Row]) -> Vec<Vec<u8>> {
    rows.iter().map(|r| r.body.clone()).collect()
}

#[tokio::test]
async fn appended_events_persist_across_reopen_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool");
    {
        let spool = Spool::open(&path, 1 << 20, SpoolSync::Full).expect("open");
        let mut last = 0;
        for i in 0..100u8 {
            last = spool.append(vec![i; 10]);
        }
        assert_eq!(last, 100, "tickets count appends");
        committed(&spool, last).await;
        let state = *spool.state().borrow();
        assert_eq!((state.rows, state.bytes), (100, 1000));
    }
    let spool = Spool::open(&path, 1 << 20, SpoolSync::Normal).expect("reopen");
    let state = *spool.state().borrow();
    assert_eq!(
        (state.rows, state.bytes),
        (100, 1000),
        "counted again at open"
    );
    let rows = spool.read_after(0, 1000).expect("read");
    assert_eq!(
        bodies(&rows),
        (0..100u8).map(|i| vec![i; 10]).collect::<Vec<_>>()
    );
    let rest = spool.read_after(rows[49].id, 10).expect("read");
    assert_eq!(
        rest[0].body,
        vec![50u8; 10],
        "reading resumes after a row id"
    );
    assert_eq!(rest.len(), 10);
}

#[tokio::test]
async fn acknowledged_rows_are_deleted_and_ids_never_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool");
    let spool = Spool::open(&path, 1 << 20, SpoolSync::Normal).expect("open");
    for i in 0..3u8 {
        spool.append(vec![i; 4]);
    }
    committed(&spool, 3).await;
    let rows = spool.read_after(0, 10).expect("read");
    spool.delete(rows.iter().map(|r| (r.id, 4)).collect());
    committed(&spool, 4).await;
    let state = *spool.state().borrow();
    assert_eq!((state.rows, state.bytes, state.deleted), (0, 0, 3));
    assert_eq!(state.first_row, None);
    assert!(state.last_delete_unix_us.is_some());
    drop(spool);
    let spool = Spool::open(&path, 1 << 20, SpoolSync::Normal).expect("reopen");
    assert_eq!(spool.state().borrow().last_row, rows[2].id);
    let ticket = spool.append(vec![9]);
    committed(&spool, ticket).await;
    let again = spool.read_after(0, 10).expect("read");
    assert!(again[0].id > rows[2].id, "a new row gets a new id");
}

#[tokio::test]
async fn size_is_accounted_and_full_at_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(&dir.path().join("s"), 100, SpoolSync::Normal).expect("open");
    let t = spool.append(vec![0; 60]);
    committed(&spool, t).await;
    assert!(!spool.state().borrow().full());
    let t = spool.append(vec![0; 40]);
    committed(&spool, t).await;
    let state = *spool.state().borrow();
    assert_eq!(state.bytes, 100);
    assert!(state.full(), "at the bound counts as full");
    let t = spool.append(vec![0; 40]);
    committed(&spool, t).await;
    assert_eq!(
        spool.state().borrow().rows,
        3,
        "a full spool still takes events"
    );
    let rows = spool.read_after(0, 1).expect("read");
    spool.delete(vec![(rows[0].id, 60)]);
    committed(&spool, t + 1).await;
    assert!(!spool.state().borrow().full(), "80 of 100 bytes");
}

#[test]
fn a_directory_others_can_write_or_read_is_refused() {
    // 0755 too: the review read undelivered events from a spool in a world-readable directory.
    for mode in [0o777, 0o755, 0o750] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("open");
        std::fs::create_dir(&path).expect("mkdir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = Spool::open(&path, 1, SpoolSync::Normal).expect_err("unsafe");
        assert!(matches!(err, SpoolError::Unsafe { .. }), "{mode:o}: {err}");
        assert!(err.to_string().contains("open to group or others"), "{err}");
    }
}

#[test]
fn a_new_directory_is_made_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b");
    drop(Spool::open(&path, 1, SpoolSync::Normal).expect("open"));
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_corrupt_spool_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool");
    std::fs::create_dir(&path).expect("mkdir");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(path.join(SPOOL_FILE), vec![0x5a; 8192]).expect("write garbage");
    let err = Spool::open(&path, 1, SpoolSync::Normal).expect_err("corrupt");
    assert!(matches!(err, SpoolError::Sqlite { .. }), "{err}");
}

#[test]
fn a_path_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("file");
    std::fs::write(&path, b"x").expect("write");
    let err = Spool::open(&path, 1, SpoolSync::Normal).expect_err("not a dir");
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn an_unwritable_spool_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool");
    std::fs::create_dir(&path).expect("mkdir");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    // A directory where the database file should be: SQLite cannot open it.
    std::fs::create_dir(path.join(SPOOL_FILE)).expect("mkdir");
    let err = Spool::open(&path, 1, SpoolSync::Normal).expect_err("unwritable");
    assert!(matches!(err, SpoolError::Sqlite { .. }), "{err}");
}
