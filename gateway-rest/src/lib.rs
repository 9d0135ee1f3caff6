//! Placeholder crate: see README.md for what it will hold.
