//! The daemons' `log_file`, kept as Python's `logging.handlers.WatchedFileHandler` (Salt's
//! handler for it) keeps it: before each line, when the path no longer names the open file
//! (logrotate moved or removed it), the file is opened again at the path, so rotation needs
//! neither `copytruncate` nor a signal.
//!
//! A log file is opened for appending and created with mode 0640 ([`MODE`], Salt's: the default
//! `log_file` is shared with salt-master); at start, one with looser permissions is tightened
//! to 0640 ([`WatchedFile::restrict`]).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The mode of a log file (the umask may take more away from a new one).
pub const MODE: u32 = 0o640;

/// Opens `path` for appending, creating it with [`MODE`] when it is missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(MODE)
        .open(path)
}

/// An open log file and the identity (device, inode) it had when opened.
#[derive(Debug)]
struct Opened {
    file: File,
    dev: u64,
    ino: u64,
}

impl Opened {
    fn at(path: &Path) -> io::Result<Self> {
        let file = open_append(path)?;
        let meta = file.metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            file,
        })
    }

    /// Whether `path` still names this file.
    fn is_at(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
    }
}

/// A log file reopened at its path when that path comes to name another file or none
/// (a `tracing_subscriber` writer: one check per line).
#[derive(Debug)]
pub struct WatchedFile {
    path: PathBuf,
    current: Mutex<Opened>,
}

impl WatchedFile {
    /// Opens (creates) the log file at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            current: Mutex::new(Opened::at(path)?),
        })
    }

    /// Takes away the permission bits the open file has beyond [`MODE`] (0644 or 0666
    /// become 0640, 0600 stays); true when it changed them. Fails when we do not own it.
    pub fn restrict(&self) -> io::Result<bool> {
        let current = self.lock();
        let mode = current.file.metadata()?.permissions().mode() & 0o7777;
        if mode & !MODE == 0 {
            return Ok(false);
        }
        current
            .file
            .set_permissions(Permissions::from_mode(mode & MODE))?;
        Ok(true)
    }

    /// The file for the next line: the open one, first replaced by the file at the path
    /// (created when missing) if the path no longer names it. When that cannot be opened,
    /// the old file is kept and the path tried again at the next line.
    pub fn writer(&self) -> WatchedWriter<'_> {
        let mut current = self.lock();
        if !current.is_at(&self.path) {
            if let Ok(reopened) = Opened::at(&self.path) {
                *current = reopened;
            }
        }
        WatchedWriter(current)
    }

    fn lock(&self) -> MutexGuard<'_, Opened> {
        // A line half written by a panicking thread leaves the file usable.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for WatchedFile {
    type Writer = WatchedWriter<'a>;

    fn make_writer(&'a self) -> WatchedWriter<'a> {
        self.writer()
    }
}

/// The log file held for writing one line (see [`WatchedFile::writer`]).
#[derive(Debug)]
pub struct WatchedWriter<'a>(MutexGuard<'a, Opened>);

impl Write for WatchedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(log: &WatchedFile, text: &str) {
        writeln!(log.writer(), "{text}").unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_file_moved_away_is_followed_by_a_new_one_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master");
        let log = WatchedFile::open(&path).unwrap();
        line(&log, "one");
        line(&log, "two");
        std::fs::rename(&path, dir.path().join("master.1")).unwrap();
        line(&log, "three");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("master.1"), "one\ntwo\n");
        assert_eq!(read("master"), "three\n");
        assert_eq!(mode(&path) & !MODE, 0, "created with at most 0640");
        // A file put at the path by logrotate's `create` is taken as it is.
        std::fs::rename(&path, dir.path().join("master.2")).unwrap();
        std::fs::write(&path, "").unwrap();
        line(&log, "four");
        assert_eq!(read("master"), "four\n");
        assert_eq!(read("master.2"), "three\n");
    }

    #[test]
    fn a_removed_file_is_created_again_and_an_unopenable_path_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/minion");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let log = WatchedFile::open(&path).unwrap();
        line(&log, "one");
        std::fs::remove_file(&path).unwrap();
        line(&log, "two");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        // The directory is gone: the line goes to the (unlinked) open file, no panic.
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        line(&log, "three");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        line(&log, "four");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "four\n");
    }

    #[test]
    fn looser_permissions_are_tightened_to_0640() {
        let dir = tempfile::tempdir().unwrap();
        for (before, after, changed) in [
            (0o644, 0o640, true),
            (0o666, 0o640, true),
            (0o755, 0o640, true),
            (0o640, 0o640, false),
            (0o600, 0o600, false),
        ] {
            let path = dir.path().join(format!("log{before:o}"));
            std::fs::write(&path, "").unwrap();
            std::fs::set_permissions(&path, Permissions::from_mode(before)).unwrap();
            let log = WatchedFile::open(&path).unwrap();
            assert_eq!(log.restrict().unwrap(), changed, "{before:o}");
            assert_eq!(mode(&path), after, "{before:o}");
        }
    }
}
