//! Lane: Unix datagram sockets between yards of one host (pages, books, the tokio `LaneStack`).
