//! The keep's records and acceptance rules ([`raet_proto::keep`], re-exported here) and their
//! on-disk backend [`DirKeep`]: the reference's directory layout, atomic writes, 0600 files.

pub use raet_proto::keep::*;

mod dir;

pub use dir::DirKeep;
