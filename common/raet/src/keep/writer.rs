//! The keep writer of a [`RoadStack`](crate::stack::RoadStack): a thread that applies the
//! road's persist ops to the stack's [`Keep`] in the order the road emitted them, so that the
//! road's task never blocks on a file write or an fsync. A backlog (a join storm emits a
//! local and a remote save per join, each synced) is written as one batch without the saves
//! a later op of it replaces.
//!
//! Failures are logged and counted (`keep_error`, shown in the stack's stats; a failed read is
//! answered as no record); the road goes on (its memory is authoritative while it runs). The answers to
//! [`PersistOp::LoadRole`] go back to the road's task on a channel. [`KeepWriter::finish`]
//! (the stack's shutdown) waits for every queued op; a writer dropped without it (the
//! runtime shut down under the stack) still lets its thread apply every op queued so far.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{coalesce, Keep, PersistOp, RoleRecord};

/// The keep's answer to a role read: the role and its record (`None`: no record).
pub(crate) type RoleAnswer = (String, Option<RoleRecord>);

/// The writer thread and the channel to it.
#[derive(Debug)]
pub(crate) struct KeepWriter {
    ops: Option<std_mpsc::Sender<PersistOp>>,
    thread: Option<JoinHandle<()>>,
    errors: Arc<AtomicU64>,
}

impl KeepWriter {
    /// Starts the thread (named after the road) applying ops to `keep`; role answers go to
    /// `answers`.
    pub(crate) fn spawn(
        road: &str,
        mut keep: Box<dyn Keep>,
        answers: mpsc::UnboundedSender<RoleAnswer>,
    ) -> std::io::Result<Self> {
        let (ops, rx) = std_mpsc::channel::<PersistOp>();
        let errors = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&errors);
        let name = road.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("keep-{road}"))
            .spawn(move || {
                // Everything queued while the last batch was written is one batch, rid of
                // the writes a later one replaces (`coalesce`).
                while let Ok(first) = rx.recv() {
                    let batch: Vec<PersistOp> =
                        std::iter::once(first).chain(rx.try_iter()).collect();
                    for op in coalesce(batch) {
                        let read = op.apply(keep.as_mut()).unwrap_or_else(|e| {
                            warn!(road = %name, op = op.kind(), error = %e, "keep failed");
                            counted.fetch_add(1, Ordering::Relaxed);
                            None
                        });
                        if let PersistOp::LoadRole { role } = op {
                            // The road's task may be gone (shutting down): nothing to do then.
                            let _ = answers.send((role, read));
                        }
                    }
                }
                debug!(road = %name, "keep writer done");
            })?;
        Ok(Self {
            ops: Some(ops),
            thread: Some(thread),
            errors,
        })
    }

    /// Queues one op (never blocks). After [`KeepWriter::finish`] started, ops are dropped.
    pub(crate) fn push(&self, op: PersistOp) {
        if let Some(ops) = &self.ops {
            if ops.send(op).is_err() {
                // Only when the thread panicked: counted as a failed write.
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many ops failed so far.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Lets the thread apply every op queued so far and waits for it (off the async
    /// runtime's worker threads).
    pub(crate) async fn finish(&mut self) {
        self.ops = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => warn!("keep writer panicked"),
            Err(e) => warn!(error = %e, "keep writer not joined"),
        }
    }
}

#[cfg(test)]
mod tests;
