//! The `user` of Salt's configuration: resolved through the system's account database (NSS,
//! `getpwnam`), as Salt's `pwd.getpwnam` does, so users from LDAP or sssd are found too.
//!
//! A daemon started as root with another `user` prepares its directories for that user and
//! drops to it ([`switch_user`]), as Salt's `verify_env` and `check_user` do.

use std::ffi::CString;
use std::os::unix::fs::{lchown, DirBuilderExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{self, Gid, Uid, User};

/// A resolved account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

/// The account called `name` in the system's account database (`getpwnam`: `/etc/passwd` and
/// whatever else `/etc/nsswitch.conf` lists); `Ok(None)` when there is none (including the
/// errors `getpwnam(3)` lists for "not found"), an error when the database could not be asked.
pub fn lookup_account(name: &str) -> Result<Option<Account>, Errno> {
    match User::from_name(name) {
        Ok(user) => Ok(user.map(|u| Account {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })),
        Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The effective user id of this process (from `/proc/self/status`).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// What a daemon does about `user` at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// No `user`, or already running as it: nothing to do.
    Stay,
    /// Running as root: prepare the directories for this account and drop to it.
    Drop(Account),
    /// Neither root nor `user`: refuse to start, as Salt.
    Refuse,
}

/// The [`Switch`] of a process whose effective user id is `euid` configured with `user`'s
/// account.
pub fn decide(euid: u32, user: Option<Account>) -> Switch {
    match user {
        Some(account) if account.uid != euid => {
            if euid == 0 {
                Switch::Drop(account)
            } else {
                Switch::Refuse
            }
        }
        _ => Switch::Stay,
    }
}

/// Why a daemon could not run as `user`.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Not root and not `user` (Salt's `check_user` message).
    #[error("Salt configured to run as user {user:?} but unable to switch (running as uid {euid}, not root)")]
    NotRoot {
        /// The configured `user`.
        user: String,
        /// Our effective user id.
        euid: u32,
    },
    /// A directory could not be created or handed over to `user`.
    #[error("user {user:?}: {path}: {error}")]
    Prepare {
        /// The configured `user`.
        user: String,
        /// The path.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A privilege-dropping call failed, or the ids are not `user`'s afterwards.
    #[error("user {user:?}: dropping privileges failed: {what}")]
    Drop {
        /// The configured `user`.
        user: String,
        /// What failed.
        what: String,
    },
}

/// A directory the daemon needs, created (with `mode`) when missing and handed over with
/// everything in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedDir {
    /// The directory.
    pub path: PathBuf,
    /// Its mode when it is created.
    pub mode: u32,
}

/// Makes the process run as `user` (its account `account`, `None` when no `user` is set):
/// nothing when it already does; as root, creates `dirs` and chowns them (recursively, not
/// following symbolic links) and `files` (created when missing and possible) to the account,
/// then sets the group,
/// the supplementary groups (`initgroups`) and the user id of the whole process, and checks
/// that it cannot become root again. Call it before any thread is started.
pub fn switch_user(
    user: &str,
    account: Option<Account>,
    dirs: &[OwnedDir],
    files: &[PathBuf],
) -> Result<Switch, UserError> {
    let euid = unistd::geteuid().as_raw();
    let switch = decide(euid, account);
    match switch {
        Switch::Stay => {}
        Switch::Refuse => {
            return Err(UserError::NotRoot {
                user: user.to_owned(),
                euid,
            })
        }
        Switch::Drop(account) => {
            let prepare = |path: &Path, error| UserError::Prepare {
                user: user.to_owned(),
                path: path.to_owned(),
                error,
            };
            for dir in dirs {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(dir.mode)
                    .create(&dir.path)
                    .map_err(|e| prepare(&dir.path, e))?;
                chown_tree(&dir.path, account).map_err(|(p, e)| prepare(&p, e))?;
            }
            for file in files {
                // Created as the daemon would (mode 0640); one that cannot be is left to
                // the daemon to report.
                if crate::logfile::open_append(file).is_err() {
                    continue;
                }
                lchown(file, Some(account.uid), Some(account.gid)).map_err(|e| prepare(file, e))?;
            }
            drop_to(user, account)?;
        }
    }
    Ok(switch)
}

/// Chowns `dir` and everything under it to `account`.
fn chown_tree(dir: &Path, account: Account) -> Result<(), (PathBuf, std::io::Error)> {
    lchown(dir, Some(account.uid), Some(account.gid)).map_err(|e| (dir.to_owned(), e))?;
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_owned(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_owned(), e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| (path.clone(), e))?;
        if kind.is_dir() {
            chown_tree(&path, account)?;
        } else {
            lchown(&path, Some(account.uid), Some(account.gid)).map_err(|e| (path, e))?;
        }
    }
    Ok(())
}

/// Sets the gid, the supplementary groups and the uid of the process to `account`'s (glibc
/// applies them to every thread) and checks the result.
fn drop_to(user: &str, account: Account) -> Result<(), UserError> {
    let fail = |what: String| UserError::Drop {
        user: user.to_owned(),
        what,
    };
    let (uid, gid) = (Uid::from_raw(account.uid), Gid::from_raw(account.gid));
    let name = CString::new(user).map_err(|e| fail(format!("user name: {e}")))?;
    unistd::setgid(gid).map_err(|e| fail(format!("setgid({gid}): {e}")))?;
    unistd::initgroups(&name, gid).map_err(|e| fail(format!("initgroups: {e}")))?;
    unistd::setuid(uid).map_err(|e| fail(format!("setuid({uid}): {e}")))?;
    let ids = [
        unistd::getuid().as_raw(),
        unistd::geteuid().as_raw(),
        unistd::getgid().as_raw(),
        unistd::getegid().as_raw(),
    ];
    if ids != [account.uid, account.uid, account.gid, account.gid] {
        return Err(fail(format!("ids are {ids:?} afterwards")));
    }
    if unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(fail("root can be regained".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn root_and_nobody_are_found_and_a_missing_user_is_not() {
        assert_eq!(lookup_account("root"), Ok(Some(Account { uid: 0, gid: 0 })));
        assert_eq!(
            lookup_account("nobody").map(|a| a.map(|a| a.uid)),
            Ok(Some(65_534))
        );
        assert_eq!(lookup_account("no such user here"), Ok(None));
        assert_eq!(lookup_account(""), Ok(None));
        assert_eq!(lookup_account("ro\0ot"), Ok(None));
    }

    #[test]
    fn root_drops_the_same_user_stays_and_another_user_refuses() {
        let salt = Account { uid: 998, gid: 997 };
        let root = Account { uid: 0, gid: 0 };
        assert_eq!(decide(0, Some(salt)), Switch::Drop(salt));
        assert_eq!(decide(998, Some(salt)), Switch::Stay);
        assert_eq!(decide(1000, Some(salt)), Switch::Refuse);
        assert_eq!(decide(1000, Some(root)), Switch::Refuse);
        assert_eq!(decide(0, Some(root)), Switch::Stay);
        assert_eq!(decide(0, None), Switch::Stay);
        assert_eq!(decide(1000, None), Switch::Stay);
    }

    #[test]
    fn our_uid_is_the_owner_of_our_files() {
        let dir = tempfile::tempdir().unwrap();
        let ours = std::fs::metadata(dir.path()).unwrap().uid();
        assert_eq!(effective_uid(), Some(ours));
    }
}
