//! The training forward and the inference forward agree.
