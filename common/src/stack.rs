//! The tokio driver of the road core: `RoadStack` over a real UDP socket.
