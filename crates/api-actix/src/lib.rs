//! The `agentic` binary as a library, so integration tests build the same application in-process:
//! [`startup::Application`] wires adapters into domain services and serves the HTTP API;
//! [`cli`] holds the subcommands.

pub mod chat_models;
pub mod cli;
pub mod config;
pub mod http;
pub mod startup;
pub mod state;
