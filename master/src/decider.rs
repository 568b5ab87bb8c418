//! Key decisions off the daemon's task (issue 11: join storms). A thread owns the
//! [`Acceptor`] and the pki writes: the daemon hands it [`Job`]s and goes on with the road,
//! the lane and the other joins; the thread takes the jobs in order, as many as are waiting
//! at once (a batch), decides each from the pki directories, writes what Salt's rules say
//! (each key file synced before its rename, then one fsync per directory for the whole
//! batch) and only then reports the batch's [`Done`]s, so that nothing is acted on before it
//! is durable. The daemon bounds the joins in flight ([`MAX_DECIDING`]): a join beyond it is
//! left pending on the road (its joiner was answered `pend` and asks again later).

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::thread;

use salt_raet::identity::check_binding;
use salt_raet::pki::{self, DirSyncs, KeyState, Pki};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::acceptance::{same_key, Acceptor, Answer, AuthAct, Decision};

/// Joins whose decision may be asked for at once; beyond that, a pending join waits for its
/// joiner to ask again (admission control: decisions at the rate the disk sustains, the
/// joins beyond it told `pend` rather than all started and none finished).
pub(crate) const MAX_DECIDING: usize = 1024;

/// What the daemon asks of the decision thread.
#[derive(Debug)]
pub(crate) enum Job {
    /// A join awaits the decision on the keys it offered (the road's `Pending` event).
    Join {
        /// The minion id.
        name: String,
        /// Its offered Ed25519 verify key, hex.
        verhex: String,
        /// Its offered curve key, hex.
        pubhex: String,
    },
    /// The road rejected a join offering other keys than the accepted ones: Salt denies
    /// such a key (`minions_denied/<id>`) if the id's key is still accepted.
    OtherKey {
        /// The minion id.
        name: String,
        /// The offered verify key, hex.
        verhex: String,
        /// The offered curve key, hex.
        pubhex: String,
    },
    /// The join of `name` completed: the pending key its decision wrote stays.
    Joined(String),
    /// The road dropped the first contact `name` before its join completed: the pending key
    /// its decision wrote goes, if `minions_pre` still holds that key.
    Dropped(String),
}

/// What the decision thread reports back.
#[derive(Debug)]
pub(crate) enum Done {
    /// A join decided (and its pki write durable).
    Decided {
        /// The minion id.
        name: String,
        /// The verify key decided on, hex (the road applies the decision only to it).
        verhex: String,
        /// The curve key offered with it, hex.
        pubhex: String,
        /// What the road answers.
        answer: Answer,
        /// The `salt/auth` act and the key as PEM, when a decision was made.
        auth: Option<(AuthAct, String)>,
        /// The key's state in the pki directories after the decision (`None` when it could
        /// not be read).
        state: Option<Option<KeyState>>,
    },
    /// Another key offered for an accepted id was denied: `salt/auth` act `denied`.
    Denied {
        /// The minion id.
        name: String,
        /// The offered key, PEM.
        pem: String,
    },
    /// The pending key of a dropped first contact was removed.
    Removed(String),
    /// No decision on the join of `name` (its pki write could not be made durable): it
    /// stays pending on the road and is decided again when its joiner asks again.
    Unsettled(String),
}

impl Done {
    /// This report once its batch's writes failed to sync: a decision is unsettled.
    fn unsettled(self) -> Self {
        match self {
            Self::Decided { name, .. } => Self::Unsettled(name),
            other => other,
        }
    }
}

/// The daemon's handle on the decision thread (stops when dropped).
#[derive(Debug)]
pub(crate) struct Decider {
    jobs: std_mpsc::Sender<Job>,
}

impl Decider {
    /// Starts the decision thread; its reports come on the returned receiver.
    pub(crate) fn spawn(
        acceptor: Acceptor,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<Done>)> {
        let (jobs, rx) = std_mpsc::channel();
        let (done, done_rx) = mpsc::unbounded_channel();
        let mut worker = Worker {
            acceptor,
            first_contacts: BTreeMap::new(),
        };
        thread::Builder::new()
            .name("key-decisions".to_owned())
            .spawn(move || worker.run(&rx, &done))?;
        Ok((Self { jobs }, done_rx))
    }

    /// Hands `job` to the thread; false when it stopped.
    pub(crate) fn ask(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }
}

/// The decision thread's state.
struct Worker {
    acceptor: Acceptor,
    /// Pending keys the decisions on first contacts wrote (id -> the key), until their join
    /// completes: a first contact the road drops (it stopped asking, or made room under a
    /// join flood) takes its pending key with it, so junk does not pile up in
    /// `minions_pre`.
    first_contacts: BTreeMap<String, String>,
}

impl Worker {
    /// Takes the jobs as they come, in batches of those waiting, until the daemon is gone.
    fn run(&mut self, jobs: &std_mpsc::Receiver<Job>, done: &mpsc::UnboundedSender<Done>) {
        while let Ok(first) = jobs.recv() {
            let mut syncs = DirSyncs::default();
            let mut reports = Vec::new();
            for job in std::iter::once(first).chain(jobs.try_iter()) {
                reports.extend(self.handle(job, &mut syncs));
            }
            // Nothing decided is reported before its write is durable: after a failed sync
            // the batch's joins stay pending (their joiners ask again).
            if let Err(e) = syncs.sync() {
                warn!(error = %e, "pki writes not synced: the batch's joins are left pending");
                reports = reports.into_iter().map(Done::unsettled).collect();
            }
            for report in reports {
                if done.send(report).is_err() {
                    return;
                }
            }
        }
    }

    fn handle(&mut self, job: Job, syncs: &mut DirSyncs) -> Option<Done> {
        match job {
            Job::Join {
                name,
                verhex,
                pubhex,
            } => Some(self.join(name, verhex, pubhex, syncs)),
            Job::OtherKey {
                name,
                verhex,
                pubhex,
            } => self.other_key(name, &verhex, &pubhex, syncs),
            Job::Joined(name) => {
                self.first_contacts.remove(&name);
                None
            }
            Job::Dropped(name) => self.dropped(name),
        }
    }

    /// Salt's rules on a pending join (see [`crate::acceptance`]).
    fn join(&mut self, name: String, verhex: String, pubhex: String, syncs: &mut DirSyncs) -> Done {
        let refused = |name, verhex, pubhex| Done::Decided {
            name,
            verhex,
            pubhex,
            answer: Answer::Reject,
            auth: None,
            state: None,
        };
        let key = match check_binding(&verhex, &pubhex) {
            Ok(key) => key,
            Err(e) => {
                warn!(remote = %name, error = %e, "join refused: keys not bound");
                return refused(name, verhex, pubhex);
            }
        };
        let pem = pki::pem_from_verify_key(&key);
        let decision = match self.acceptor.join(&name, &pem, syncs) {
            Ok(decision) => decision,
            Err(e) => {
                warn!(remote = %name, error = %e, "join refused");
                return refused(name, verhex, pubhex);
            }
        };
        // The road acts on the files' state now: later moves of the key are changes
        // against it.
        let state = match key_state(self.acceptor.pki(), &name) {
            Ok(state) => Some(state),
            Err(e) => {
                warn!(remote = %name, error = %e, "cannot read the key");
                None
            }
        };
        let Decision { answer, act, write } = decision;
        if let Some((KeyState::Pending, text)) = write {
            self.first_contacts.insert(name.clone(), text);
        }
        Done::Decided {
            name,
            verhex,
            pubhex,
            answer,
            auth: Some((act, pem)),
            state,
        }
    }

    /// A join offered another key for `name`: denied as Salt's `_auth` does while the id's
    /// key is accepted (nothing is written otherwise).
    fn other_key(
        &mut self,
        name: String,
        verhex: &str,
        pubhex: &str,
        syncs: &mut DirSyncs,
    ) -> Option<Done> {
        let accepted = matches!(
            key_state(self.acceptor.pki(), &name),
            Ok(Some(KeyState::Accepted))
        );
        if !accepted {
            return None;
        }
        let pem = match check_binding(verhex, pubhex) {
            Ok(key) => pki::pem_from_verify_key(&key),
            Err(e) => {
                warn!(remote = %name, error = %e, "rejected join: keys not bound");
                return None;
            }
        };
        match self.acceptor.join(&name, &pem, syncs) {
            Ok(decision) if decision.act == AuthAct::Denied => Some(Done::Denied { name, pem }),
            Ok(decision) => {
                debug!(remote = %name, act = decision.act.as_str(), "rejected join");
                None
            }
            Err(e) => {
                warn!(remote = %name, error = %e, "rejected join: key not recorded");
                None
            }
        }
    }

    /// A dropped first contact: its pending key goes if it is still the one written.
    fn dropped(&mut self, name: String) -> Option<Done> {
        let written = self.first_contacts.remove(&name)?;
        let pki = self.acceptor.pki();
        let ours = matches!(pki.lookup(&name), Ok(Some(key))
            if key.state == KeyState::Pending && same_key(&key.text, &written));
        if !ours {
            return None;
        }
        match pki.remove(&name) {
            Ok(_) => {
                info!(remote = %name, "pending key of a first contact that stopped asking removed");
                Some(Done::Removed(name))
            }
            Err(e) => {
                warn!(remote = %name, error = %e, "cannot remove the pending key");
                None
            }
        }
    }
}

/// The state of `id`'s key in the pki directories (`None`: no key).
pub(crate) fn key_state(pki: &Pki, id: &str) -> Result<Option<KeyState>, pki::PkiError> {
    let key = pki.lookup(id)?;
    let denied = pki.denied(id)?;
    Ok(key.map(|k| k.state).or(denied.map(|_| KeyState::Denied)))
}
