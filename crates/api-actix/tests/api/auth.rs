//! Authentication: see the helper-written tests below.
