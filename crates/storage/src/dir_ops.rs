//! Directory entries: creating, renaming and removing files, and the directory fsync that makes
//! those durable. The WAL, the snapshot files, the backend and the data dir make every such
//! change through here.
//!
//! Test builds only (`failpoints` feature), in power-loss mode (`OXCD_TEST_LOSE_UNSYNCED_WRITES=1`,
//! see [`crate::backend::power_loss`]): a machine losing power may lose any directory change
//! not followed by an fsync of its directory, so each change is noted in that directory's
//! journal ([`JOURNAL`]) until [`sync_dir`], and [`drop_unsynced`], called at the next start
//! before anything is read, undoes what is still noted. A removed entry is kept under a hidden
//! name until then, and so is a file that a rename replaced. A crash test then proves that the
//! code syncs the directories it changes: a missing fsync loses the change after the restart.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The journal of unsynced changes kept in each directory in power-loss mode.
pub const JOURNAL: &str = ".oxcd-unsynced-dir-ops";
/// Prefix of the hidden names that keep removed or replaced entries until their directory is
/// synced.
const KEPT_PREFIX: &str = ".oxcd-kept-";

/// Held across a change and its journal entry, and across a sync and the journal's clearing,
/// so that a change is never noted after the sync that made it durable.
static LOCK: Mutex<()> = Mutex::new(());
/// Numbers the hidden names.
static KEPT: AtomicU64 = AtomicU64::new(0);

/// Creates a file or directory with `create`; the new entry is lost in a power loss until its
/// directory is synced. Nothing is noted if `path` existed already.
pub fn create<T, E>(path: &Path, create: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let _held = lock();
    let existed = fs::symlink_metadata(path).is_ok();
    let made = create()?;
    if !existed && active() {
        note(path, &["created", &text(path)]);
    }
    Ok(made)
}

/// Renames `from` to `to` (replacing `to`).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let _held = lock();
    if !active() {
        return fs::rename(from, to);
    }
    // The file `to` held before is kept, to be put back if the rename is undone.
    let replaced = if fs::metadata(to).is_ok_and(|m| m.is_file()) {
        let kept = kept_name(to);
        fs::hard_link(to, &kept)?;
        text(&kept)
    } else {
        String::new()
    };
    fs::rename(from, to)?;
    note(to, &["renamed", &text(from), &text(to), &replaced]);
    Ok(())
}

/// Removes a file.
pub fn remove_file(path: &Path) -> io::Result<()> {
    remove(path, |p| fs::remove_file(p))
}

/// Removes a directory and everything in it.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    remove(path, |p| fs::remove_dir_all(p))
}

fn remove(path: &Path, remove: fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let _held = lock();
    if !active() {
        return remove(path);
    }
    let kept = kept_name(path);
    fs::rename(path, &kept)?;
    note(path, &["removed", &text(path), &text(&kept)]);
    Ok(())
}

/// Makes every change of `dir`'s entries durable (fsync of the directory).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let _held = lock();
    File::open(dir)?.sync_all()?;
    if active() {
        // Durable now: what was kept for an undo can go.
        for entry in read_journal(dir) {
            if let ["removed", _, kept] | ["renamed", _, _, kept] = entry_fields(&entry)[..] {
                if !kept.is_empty() {
                    remove_any(Path::new(kept));
                }
            }
        }
        let _ = fs::remove_file(dir.join(JOURNAL));
    }
    Ok(())
}

/// Power-loss mode: undoes every change to the entries of `dirs` that no directory sync made
/// durable, newest first, and removes the journals. Give inner directories before the outer
/// ones. Does nothing otherwise.
pub fn drop_unsynced(dirs: &[PathBuf]) -> io::Result<()> {
    let _held = lock();
    if !active() {
        return Ok(());
    }
    for dir in dirs {
        let entries = read_journal(dir);
        for entry in entries.iter().rev() {
            let undone = match entry_fields(entry)[..] {
                ["created", path] => {
                    remove_any(Path::new(path));
                    Ok(())
                }
                ["renamed", from, to, replaced] => {
                    fs::rename(to, from).and_then(|()| match replaced {
                        "" => Ok(()),
                        kept => fs::rename(kept, to),
                    })
                }
                ["removed", path, kept] => fs::rename(kept, path),
                _ => Ok(()),
            };
            match undone {
                Ok(()) => {
                    tracing::warn!(dir = %dir.display(), change = %entry, "test mode: dropped a directory change that was not synced")
                }
                // Already gone with an outer change undone first, or never made.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let _ = fs::remove_file(dir.join(JOURNAL));
        // Kept entries of changes synced just before a crash.
        if let Ok(listing) = fs::read_dir(dir) {
            for dent in listing.flatten() {
                if dent.file_name().to_string_lossy().starts_with(KEPT_PREFIX) {
                    remove_any(&dent.path());
                }
            }
        }
    }
    Ok(())
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(feature = "failpoints")]
fn active() -> bool {
    crate::backend::power_loss::enabled() || test_mode::on()
}

#[cfg(not(feature = "failpoints"))]
fn active() -> bool {
    test_mode::on()
}

/// Unit tests switch power-loss mode on for their own thread.
#[cfg(test)]
pub(crate) mod test_mode {
    use std::cell::Cell;

    thread_local!(static ON: Cell<bool> = const { Cell::new(false) });

    pub(crate) fn set(on: bool) {
        ON.with(|c| c.set(on));
    }

    pub(super) fn on() -> bool {
        ON.with(Cell::get)
    }
}

#[cfg(not(test))]
mod test_mode {
    pub(super) fn on() -> bool {
        false
    }
}

/// Appends a journal entry to the directory holding `path`. A failure only weakens the test.
fn note(path: &Path, fields: &[&str]) {
    let dir = parent(path);
    let line = format!("{}\n", fields.join("\t"));
    let written = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(JOURNAL))
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(dir = %dir.display(), error = %e, "test mode: cannot note a directory change");
    }
}

fn read_journal(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join(JOURNAL))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn entry_fields(entry: &str) -> Vec<&str> {
    entry.split('\t').collect()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn kept_name(path: &Path) -> PathBuf {
    let n = KEPT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    parent(path).join(format!(
        "{KEPT_PREFIX}{}-{n}-{}",
        std::process::id(),
        name.unwrap_or_default()
    ))
}

/// A path in a journal entry (test mode: paths are plain text).
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn remove_any(path: &Path) {
    let _ = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_changes_are_undone_and_synced_ones_kept() {
        test_mode::set(true);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        create(&a, || fs::write(&a, b"a")).unwrap();
        create(&b, || fs::write(&b, b"b")).unwrap();
        sync_dir(&dir).unwrap();
        // After the sync: a rename over b, a removal, a creation; then the power goes.
        rename(&a, &b).unwrap();
        remove_file(&b).unwrap();
        create(&c, || fs::write(&c, b"c")).unwrap();
        assert!(!a.exists() && !b.exists() && c.exists());
        drop_unsynced(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"a");
        assert_eq!(fs::read(&b).unwrap(), b"b");
        assert!(!c.exists());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // Synced, the same changes stay.
        rename(&a, &b).unwrap();
        create(&c, || fs::write(&c, b"c")).unwrap();
        sync_dir(&dir).unwrap();
        drop_unsynced(std::slice::from_ref(&dir)).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"a");
        assert_eq!(fs::read(&c).unwrap(), b"c");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        test_mode::set(false);
    }

    #[test]
    fn outside_power_loss_mode_nothing_is_noted() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        create(&a, || fs::write(&a, b"a")).unwrap();
        remove_file(&a).unwrap();
        assert!(!tmp.path().join(JOURNAL).exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
