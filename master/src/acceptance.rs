//! Who may join the master: Salt's key acceptance rules, mapped onto RAET.
//!
//! The RAET mode comes from Salt's config ([`salt_raet::config::auto_mode`]): `open_mode: True` → `always`,
//! `auto_accept: True` → `once`, else `never`; our `raet_auto_accept` overrides both.
//!
//! [`decide`] is Salt 3008's `_auth` decision (salt/channel/server.py) for a joining minion id and
//! the key it offers, as a pure function of the mode, the id's pki state and the
//! `autosign_file`/`autoreject_file` matches. It says what to write to the pki directories,
//! what to answer on the road and which `salt/auth` act to fire:
//!
//! | stored key               | autoreject | auto-sign¹ | answer | pki write                    | act    |
//! |--------------------------|------------|------------|--------|------------------------------|--------|
//! | any (mode `always`)      | -          | -          | accept | accepted (if new/changed)²   | accept |
//! | rejected                 | -          | -          | reject | -                            | reject |
//! | accepted, same key       | -          | -          | accept | -                            | accept |
//! | accepted, other key      | -          | -          | reject | denied ← offered key         | denied |
//! | none                     | yes        | -          | reject | rejected ← offered key       | reject |
//! | none                     | no         | no         | pend   | pending ← offered key        | pend   |
//! | none                     | no         | yes        | accept | accepted ← offered key       | accept |
//! | pending                  | yes        | -          | reject | rejected ← the pending key   | reject |
//! | pending, other key       | no         | any        | reject | denied ← offered key         | denied |
//! | pending, same key        | no         | no         | pend   | -                            | pend   |
//! | pending, same key        | no         | yes        | accept | accepted ← the key           | accept |
//!
//! ¹ auto-sign = mode `once` (Salt's `auto_accept`) or an `autosign_file` match.
//! ² Salt's `open_mode` accepts a rejected id's same key without moving its file; RAET's
//! `always` accepts and records it as accepted, so salt-key shows what the road does.
//! A denied key already stored with the same text is not rewritten. A pending key is never
//! replaced by a different one (Salt denies it), so the operator accepts the key they saw.
//!
//! Patterns in `autosign_file`/`autoreject_file` match as Salt's `expr_match`: one per line,
//! `#` lines skipped; a line matches an id as an `fnmatch` glob or else as a regular expression
//! anchored at both ends. Files writable by others (or by the group: we do not read
//! `permissive_pki_access`) are ignored with a warning, as Salt does. Salt's `autosign_grains_dir`
//! and `minions_autosign` directory are not supported.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

use raet::keep::AutoMode;
use salt_raet::config::MasterConfig;
use salt_raet::pki::{self, DirSyncs, KeyState, Pki, PkiError, StoredKey};

/// What the road answers a joining minion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Accept the join.
    Accept,
    /// Keep it pending (an operator decides with salt-key).
    Pend,
    /// Reject it.
    Reject,
}

/// The `act` of the `salt/auth` event (Salt's `auth_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthAct {
    /// Accepted.
    Accept,
    /// Placed or left in pending.
    Pend,
    /// Rejected.
    Reject,
    /// A key differing from the stored one was offered.
    Denied,
}

impl AuthAct {
    /// The event's `act` string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Pend => "pend",
            Self::Reject => "reject",
            Self::Denied => "denied",
        }
    }

    /// The event's `result` (true for accept and pend, as Salt).
    pub(crate) fn result(self) -> bool {
        matches!(self, Self::Accept | Self::Pend)
    }
}

/// What the pki directories and the autosign/autoreject files say about a joining id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Its key as salt-key sees it (pending, accepted or rejected).
    pub stored: Option<StoredKey>,
    /// Its denied key, if any.
    pub denied: Option<String>,
    /// It matches a line of `autosign_file`.
    pub autosign: bool,
    /// It matches a line of `autoreject_file`.
    pub autoreject: bool,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// What to answer on the road.
    pub answer: Answer,
    /// The `salt/auth` act to fire.
    pub act: AuthAct,
    /// What to store in the pki directories first, if anything: `(state, key text)`.
    pub write: Option<(KeyState, String)>,
}

/// Whether two key texts are the same key: equal once trimmed, or both parse to the same key.
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    a.trim() == b.trim()
        || matches!((pki::verify_key_from_pem(a), pki::verify_key_from_pem(b)), (Ok(x), Ok(y)) if x == y)
}

/// Salt's `_auth` decision (see the module table) for a minion offering `offered` (its PEM).
pub(crate) fn decide(mode: AutoMode, facts: &Facts, offered: &str) -> Decision {
    let offered = offered.trim();
    let decision = |answer, act, write: Option<(KeyState, &str)>| Decision {
        answer,
        act,
        write: write.map(|(state, text)| (state, text.to_owned())),
    };
    let deny = || {
        let known = facts
            .denied
            .as_deref()
            .is_some_and(|d| same_key(d, offered));
        decision(
            Answer::Reject,
            AuthAct::Denied,
            (!known).then_some((KeyState::Denied, offered)),
        )
    };
    let auto_sign = mode == AutoMode::Once || facts.autosign;
    let stored = facts.stored.as_ref();
    if mode == AutoMode::Always {
        let current =
            stored.is_some_and(|k| k.state == KeyState::Accepted && same_key(&k.text, offered));
        return decision(
            Answer::Accept,
            AuthAct::Accept,
            (!current).then_some((KeyState::Accepted, offered)),
        );
    }
    match stored {
        Some(key) if key.state == KeyState::Rejected => {
            decision(Answer::Reject, AuthAct::Reject, None)
        }
        Some(key) if key.state == KeyState::Accepted => {
            if same_key(&key.text, offered) {
                decision(Answer::Accept, AuthAct::Accept, None)
            } else {
                deny()
            }
        }
        None if facts.autoreject => decision(
            Answer::Reject,
            AuthAct::Reject,
            Some((KeyState::Rejected, offered)),
        ),
        None if auto_sign => decision(
            Answer::Accept,
            AuthAct::Accept,
            Some((KeyState::Accepted, offered)),
        ),
        None => decision(
            Answer::Pend,
            AuthAct::Pend,
            Some((KeyState::Pending, offered)),
        ),
        // Pending (a denied-only id has no stored key: it is `None` above).
        Some(key) => {
            if facts.autoreject {
                decision(
                    Answer::Reject,
                    AuthAct::Reject,
                    Some((KeyState::Rejected, &key.text)),
                )
            } else if !same_key(&key.text, offered) {
                deny()
            } else if auto_sign {
                decision(
                    Answer::Accept,
                    AuthAct::Accept,
                    Some((KeyState::Accepted, &key.text)),
                )
            } else {
                decision(Answer::Pend, AuthAct::Pend, None)
            }
        }
    }
}

/// Python's `fnmatch.translate` as a regular expression for the `regex` crate: `*` any
/// sequence, `?` one character, `[...]` a set (`[!...]` negated; an unclosed `[` is literal),
/// everything else literal; the whole id must match.
pub(crate) fn fnmatch_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from(r"(?s)\A(?:");
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '*' => {
                out.push_str(".*");
                // Consecutive stars are one.
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
            }
            '?' => out.push('.'),
            '[' => {
                // Find the closing bracket: a `!` and then a `]` right after the opening are
                // part of the set.
                let mut j = i;
                if chars.get(j) == Some(&'!') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while chars.get(j).is_some_and(|&c| c != ']') {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str(r"\[");
                    continue;
                }
                // Never empty: a `]` right after the opening is part of the set.
                let set: String = chars.get(i..j).unwrap_or_default().iter().collect();
                i = j + 1;
                let set = set.replace('\\', r"\\");
                let set = match set.strip_prefix('!') {
                    Some(rest) => format!("^{rest}"),
                    None if set.starts_with('^') => format!(r"\{set}"),
                    None => set,
                };
                // Escape what the regex crate treats specially inside a class but fnmatch does
                // not: nested `[`, `&&`, `~~`, `--` set operations.
                let set = set
                    .replace('[', r"\[")
                    .replace("&&", r"\&\&")
                    .replace("~~", r"\~\~");
                out.push('[');
                out.push_str(&set);
                out.push(']');
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push_str(r")\z");
    out
}

/// Salt's `expr_match(id, pattern)`: the pattern as an `fnmatch` glob, else as a regular
/// expression that must match from the start and end at the end (`\A<pattern>\Z` with
/// `re.match`). A pattern the `regex` crate cannot compile (Python's `re.error`, or a feature
/// such as backreferences it lacks) does not match.
pub(crate) fn expr_match(id: &str, pattern: &str) -> bool {
    if regex::Regex::new(&fnmatch_regex(pattern)).is_ok_and(|re| re.is_match(id)) {
        return true;
    }
    // No group around the pattern, as Salt: `a|b` means "starts with a" or "is b".
    regex::Regex::new(&format!(r"\A{pattern}\z"))
        .is_ok_and(|re| re.find(id).is_some_and(|m| m.start() == 0))
}

/// An `autosign_file` or `autoreject_file`, re-read when its modification time changes.
#[derive(Debug, Clone)]
pub(crate) struct SigningFile {
    path: PathBuf,
    cache: Option<(SystemTime, Vec<String>)>,
}

impl SigningFile {
    /// The file at `path` (it may not exist: then nothing matches).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache: None,
        }
    }

    /// Whether `id` matches a line of the file (Salt's `check_signing_file`).
    pub(crate) fn matches(&mut self, id: &str) -> bool {
        let Ok(meta) = fs::metadata(&self.path) else {
            return false;
        };
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            tracing::warn!(path = %self.path.display(), mode = format!("{:o}", mode & 0o777),
                "wrong permissions (writable by group or others), ignoring content");
            return false;
        }
        let mtime = meta.modified().ok();
        let fresh =
            matches!((&self.cache, mtime), (Some((cached, _)), Some(now)) if *cached == now);
        if !fresh {
            let text = match fs::read_to_string(&self.path) {
                Ok(text) => text,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read");
                    return false;
                }
            };
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            self.cache = Some((mtime.unwrap_or(SystemTime::UNIX_EPOCH), lines));
        }
        self.cache
            .as_ref()
            .is_some_and(|(_, lines)| lines.iter().any(|line| expr_match(id, line)))
    }
}

/// The master's acceptance: the mode, the pki directories and the two pattern files.
#[derive(Debug, Clone)]
pub(crate) struct Acceptor {
    /// The RAET mode.
    pub mode: AutoMode,
    pki: Pki,
    autosign: SigningFile,
    autoreject: SigningFile,
}

impl Acceptor {
    /// The acceptor of a master configuration (opens/creates the pki directories).
    pub(crate) fn new(config: &MasterConfig) -> Result<Self, PkiError> {
        Ok(Self {
            mode: config.auto_mode(),
            pki: Pki::open(&config.common.pki_dir)?.with_owner(config.common.owner.map(|a| a.uid)),
            autosign: SigningFile::new(&config.autosign_file),
            autoreject: SigningFile::new(&config.autoreject_file),
        })
    }

    /// The pki directories.
    pub(crate) fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Gathers the [`Facts`] of `id`.
    pub(crate) fn facts(&mut self, id: &str) -> Result<Facts, PkiError> {
        Ok(Facts {
            stored: self.pki.lookup(id)?,
            denied: self.pki.denied(id)?.map(|k| k.text),
            autoreject: self.autoreject.matches(id),
            autosign: self.autosign.matches(id),
        })
    }

    /// Decides on `id` offering `offered` (its PEM) and performs the pki write, durable once
    /// `syncs` is synced. An invalid id is an error (Salt answers such a minion `False`:
    /// reject it).
    pub(crate) fn join(
        &mut self,
        id: &str,
        offered: &str,
        syncs: &mut DirSyncs,
    ) -> Result<Decision, PkiError> {
        if !pki::valid_id(self.pki.dir(), id) {
            return Err(PkiError::InvalidId(id.to_owned()));
        }
        let facts = self.facts(id)?;
        let decision = decide(self.mode, &facts, offered);
        if let Some((state, text)) = &decision.write {
            self.pki.store_unsynced(id, *state, text, syncs)?;
        }
        tracing::info!(id, act = decision.act.as_str(), "minion key decision");
        Ok(decision)
    }
}

#[cfg(test)]
mod tests;
