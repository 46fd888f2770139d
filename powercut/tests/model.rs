//! The power-loss file system keeps its model: what is fsynced survives every cut, what is
//! not is lost by a full cut, and a random cut never undoes a sync. Needs root and /dev/fuse
//! (fails, never skips, without them).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use outpost_powercut::{Cut, Metadata, PowerFs};
use rand::SeedableRng;

fn mounted(metadata: Metadata) -> (tempfile::TempDir, PowerFs) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = PowerFs::mount(&dir.path().join("disk"), &dir.path().join("mnt"), metadata)
        .unwrap_or_else(|e| panic!("{e}"));
    (dir, fs)
}

fn sync_dir(path: &std::path::Path) {
    File::open(path)
        .and_then(|d| d.sync_all())
        .expect("fsync of the directory");
}

#[test]
fn a_full_cut_loses_exactly_what_was_not_synced() {
    let (_dir, mut fs) = mounted(Metadata::Journaled);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let m = fs.path().to_path_buf();
    let mut synced = File::create(m.join("synced")).expect("create");
    synced.write_all(b"durable").expect("write");
    synced.sync_all().expect("fsync");
    synced.write_all(b" and volatile").expect("write");
    let mut data_only = File::create(m.join("fdatasynced")).expect("create");
    data_only.write_all(b"data").expect("write");
    data_only.sync_data().expect("fdatasync");
    let mut lost = File::create(m.join("never-synced")).expect("create");
    lost.write_all(b"gone").expect("write");
    std::fs::create_dir(m.join("d")).expect("mkdir");
    drop((synced, data_only, lost));
    let (writes, journal) = fs.pending();
    println!("pending before the cut: {writes} writes, {journal} journal entries");
    assert_eq!(writes, 2, "the unsynced tail and the never-synced file");

    let report = fs.cut(Cut::All, &mut rng).expect("cut");
    println!("{report:?}");
    assert_eq!(std::fs::read(m.join("synced")).expect("read"), b"durable");
    assert_eq!(std::fs::read(m.join("fdatasynced")).expect("read"), b"data");
    // Created after the last sync: its creation is lost with its data.
    assert!(!m.join("never-synced").exists());
    assert!(
        !m.join("d").exists(),
        "the mkdir after the last sync is lost"
    );
    assert_eq!(fs.pending(), (0, 0));
}

#[test]
fn renames_need_a_sync_and_strict_metadata_needs_the_directory_synced() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    // Journaled: an fsync of any file commits the rename before it.
    let (_dir, mut fs) = mounted(Metadata::Journaled);
    let m = fs.path().to_path_buf();
    std::fs::write(m.join("a.tmp"), b"new").expect("write");
    File::open(m.join("a.tmp"))
        .and_then(|f| f.sync_all())
        .expect("fsync");
    std::fs::rename(m.join("a.tmp"), m.join("a")).expect("rename");
    let mut other = File::create(m.join("other")).expect("create");
    other.write_all(b"x").expect("write");
    other.sync_data().expect("fdatasync");
    std::fs::rename(m.join("a"), m.join("b")).expect("rename after the last sync");
    drop(other);
    fs.cut(Cut::All, &mut rng).expect("cut");
    assert_eq!(
        std::fs::read(m.join("a")).expect("the synced rename"),
        b"new"
    );
    assert!(
        !m.join("b").exists(),
        "the rename after the last sync is lost"
    );
    drop(fs);

    // Strict: a file fsynced in a directory never fsynced is lost with its creation...
    let (_dir, mut fs) = mounted(Metadata::Strict);
    let m = fs.path().to_path_buf();
    let f = File::create(m.join("f")).expect("create");
    f.write_all_at(b"fsynced", 0).expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    fs.cut(Cut::All, &mut rng).expect("cut");
    assert!(
        !m.join("f").exists(),
        "strict: the create was never committed"
    );
    // ... and kept, with its data, once the directory is fsynced (before or after the data).
    let f = File::create(m.join("f")).expect("create");
    sync_dir(&m);
    f.write_all_at(b"fsynced", 0).expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    let g = File::create(m.join("g")).expect("create");
    g.write_all_at(b"also", 0).expect("write");
    g.sync_all().expect("fsync");
    sync_dir(&m);
    drop(g);
    fs.cut(Cut::All, &mut rng).expect("cut");
    assert_eq!(std::fs::read(m.join("f")).expect("read"), b"fsynced");
    assert_eq!(std::fs::read(m.join("g")).expect("read"), b"also");
}

#[test]
fn random_cuts_never_undo_a_sync_and_sometimes_keep_or_tear_the_rest() {
    let (_dir, mut fs) = mounted(Metadata::Journaled);
    let m = fs.path().to_path_buf();
    let (mut kept, mut torn, mut unsynced, mut journal_kept) = (0, 0, 0, 0);
    let rounds = 40u64;
    for round in 0..rounds {
        let mut rng = rand::rngs::StdRng::seed_from_u64(round);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(m.join("log"))
            .expect("open");
        // A synced record per round, then unsynced ones after it.
        let synced = vec![round as u8; 1000];
        f.write_all_at(&synced, round * 1000).expect("write");
        f.sync_data().expect("fdatasync");
        for k in 0..4u64 {
            f.write_all_at(&[0xEE; 1500], (rounds + round * 4 + k) * 1500)
                .expect("write");
        }
        std::fs::write(m.join(format!("extra{round}")), b"x").expect("write");
        drop(f);
        let r = fs.cut(Cut::Random, &mut rng).expect("cut");
        kept += r.writes_kept;
        torn += r.writes_torn;
        unsynced += r.unsynced_writes;
        journal_kept += r.journal_kept;
        let now = std::fs::read(m.join("log")).expect("read");
        for past in 0..=round {
            let at = (past * 1000) as usize;
            assert_eq!(
                &now[at..at + 1000],
                &vec![past as u8; 1000][..],
                "round {round}: the record synced in round {past} was undone"
            );
        }
    }
    println!(
        "{rounds} random cuts: {unsynced} unsynced writes, {kept} kept ({torn} torn), \
         {journal_kept} journal entries kept"
    );
    assert!(
        kept > 0 && kept < unsynced,
        "random cuts keep some writes, not all"
    );
    assert!(torn > 0, "some kept writes are torn");
    assert!(journal_kept > 0);
}
