//! The vocabulary of the Agentic Platform: typed ids, validated values, entities, the [`Principal`]
//! every caller becomes, the domain [`Error`], the **ports** adapters implement, and the services that
//! hold the business rules.
//!
//! Nothing here knows about HTTP, SQL, Redis or model runtimes. Tenant scope is part of the types: a
//! repository can only be reached through a [`ports::TenantTx`], which a [`ports::Store`] opens for one
//! tenant, so a query that forgets its tenant does not compile.

pub mod entities;
pub mod error;
pub mod ids;
pub mod page;
pub mod ports;
pub mod principal;
pub mod services;
pub mod values;

pub use error::{Error, FieldError};
pub use ids::*;
pub use principal::{Actor, Principal, Role, Scope, Scopes};
