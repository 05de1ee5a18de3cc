//! The real demo model.
