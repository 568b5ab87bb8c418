//! The `user` of Salt's configuration: resolved from `/etc/passwd` (no NSS modules: LDAP or
//! sssd users are not found), as Salt's `pwd.getpwnam` does for local users.

use std::path::Path;

/// The system's account database.
pub const PASSWD: &str = "/etc/passwd";

/// A resolved account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

/// The account called `name` in the text of a passwd file (`name:pw:uid:gid:...` lines);
/// malformed lines are skipped.
pub fn find_account(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name || name.is_empty() {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Account { uid, gid })
    })
}

/// The account called `name` in the passwd file at `path`; `None` when there is none (or the
/// file cannot be read).
pub fn lookup_account(path: &Path, name: &str) -> Option<Account> {
    let text = std::fs::read_to_string(path).ok()?;
    find_account(&text, name)
}

/// The effective user id of this process (from `/proc/self/status`).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn finds_accounts_in_passwd_text() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # comment\n\
                    broken\n\
                    salt:x:998:997:Salt:/opt/saltstack/salt:/bin/sh\n\
                    bad:x:notanumber:1::/:/bin/sh\n";
        assert_eq!(
            find_account(text, "salt"),
            Some(Account { uid: 998, gid: 997 })
        );
        assert_eq!(find_account(text, "root"), Some(Account { uid: 0, gid: 0 }));
        assert_eq!(find_account(text, "sal"), None);
        assert_eq!(find_account(text, "bad"), None);
        assert_eq!(find_account(text, ""), None);
        assert_eq!(find_account(text, "broken"), None);
    }

    #[test]
    fn root_exists_and_our_uid_is_the_owner_of_our_files() {
        assert_eq!(
            lookup_account(Path::new(PASSWD), "root").map(|a| a.uid),
            Some(0)
        );
        assert_eq!(lookup_account(Path::new(PASSWD), "no such user here"), None);
        let dir = tempfile::tempdir().unwrap();
        let ours = std::fs::metadata(dir.path()).unwrap().uid();
        assert_eq!(effective_uid(), Some(ours));
    }
}
