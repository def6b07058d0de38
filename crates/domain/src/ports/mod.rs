//! Ports: what the services need from the outside world. Adapters in other crates implement them;
//! unit tests use the mockall mocks (feature `mocks`, or `cfg(test)`).
//!
//! Every method documents its errors. Adapters translate their driver errors into [`StoreError`]
//! (unique violations by constraint name become [`StoreError::Conflict`]).

mod agents;
mod api_keys;
mod audit;
mod auth;
mod chat;
mod chunks;
mod collections;
mod conversations;
mod documents;
mod embed;
mod events;
mod ingest;
mod jobs;
mod platform;
mod providers;
mod store;
mod tenants;
mod tools;
mod usage;
mod users;

pub use agents::*;
pub use api_keys::*;
pub use audit::*;
pub use auth::*;
pub use chat::*;
pub use chunks::*;
pub use collections::*;
pub use conversations::*;
pub use documents::*;
pub use embed::*;
pub use events::*;
pub use ingest::*;
pub use jobs::*;
pub use platform::*;
pub use providers::*;
pub use store::*;
pub use tenants::*;
pub use tools::*;
pub use usage::*;
pub use users::*;

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
