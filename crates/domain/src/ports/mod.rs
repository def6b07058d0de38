//! Ports: what the services need from the outside world. Adapters in other crates implement them;
//! unit tests use the mockall mocks (feature `mocks`, or `cfg(test)`).
//!
//! Every method documents its errors. Adapters translate their driver errors into [`StoreError`]
//! (unique violations by constraint name become [`StoreError::Conflict`]).

mod auth;
mod embed;
mod ingest;
mod knowledge;
mod store;

pub use auth::*;
pub use embed::*;
pub use ingest::*;
pub use knowledge::*;
pub use store::*;

use chrono::{DateTime, Utc};

/// The time, as a port so tests can fix it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
