//! A deterministic in-memory network (seeded loss, duplication, reordering, delay) for tests.
