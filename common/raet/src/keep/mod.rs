//! The keep's records and acceptance rules ([`raet_proto::keep`], re-exported here), their
//! on-disk backend [`DirKeep`] (the reference's directory layout, atomic writes, 0600 files)
//! and the thread that applies a road stack's persist ops to its keep.

pub use raet_proto::keep::*;

mod dir;
#[cfg(feature = "tokio")]
mod writer;

pub use dir::DirKeep;
#[cfg(feature = "tokio")]
pub(crate) use writer::{KeepWriter, RoleAnswer};
