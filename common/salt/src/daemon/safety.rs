//! The directories a daemon serves local processes from must be its own: its `sock_dir` and
//! lane directory hold the sockets Salt's processes and `status` talk to, and a local user who
//! could replace them could impersonate the daemon (or read what Salt sends it).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::DaemonError;

/// Checks that `dir`, when it exists, is a directory owned by `uid` and not writable by group
/// or others (a missing one is created by the daemon, mode 0700).
pub(crate) fn check_private_dir(dir: &Path, uid: u32) -> Result<(), DaemonError> {
    let unsafe_dir = |reason: String| DaemonError::UnsafeDir {
        path: dir.to_owned(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unsafe_dir(format!("cannot be checked ({e})"))),
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not by this daemon's uid {uid}",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "mode {mode:04o} lets group or others write to it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    #[test]
    fn an_own_private_or_missing_directory_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
        check_private_dir(dir.path(), uid()).unwrap();
        check_private_dir(&dir.path().join("missing"), uid()).unwrap();
    }

    #[test]
    fn a_writable_or_foreign_directory_or_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o770, 0o702] {
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
            let e = check_private_dir(dir.path(), uid()).unwrap_err();
            assert!(e.to_string().contains(&format!("mode {mode:04o}")), "{e}");
            assert_eq!(e.exit_code(), crate::EXIT_BAD_CONFIG);
        }
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let e = check_private_dir(dir.path(), uid() + 1).unwrap_err();
        assert!(e.to_string().contains("owned by uid"), "{e}");
        let file = dir.path().join("f");
        fs::write(&file, "").unwrap();
        let e = check_private_dir(&file, uid()).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }
}
