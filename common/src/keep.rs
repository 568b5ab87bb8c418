//! The keep: the local estate and every remote persisted on disk, and key acceptance (auto modes).
