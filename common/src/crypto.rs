//! Long-term and short-term keys, signing and crypto_box with cached shared keys.
