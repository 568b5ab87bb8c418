//! The sans-IO road core: remotes, transactions (join, allow, alive, message), timers.
