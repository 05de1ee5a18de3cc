//! Batched decode over mixed adapters equals decoding each sequence alone.
