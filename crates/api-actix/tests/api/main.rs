//! Integration tests over HTTP against real PostgreSQL (fresh database per test) and Redis.
#![allow(clippy::unwrap_used)]

mod helpers;

mod agents;
mod auth;
mod bombs;
mod collections;
mod contract;
mod execution;
mod fairness;
mod hostile;
mod isolation;
mod knowledge;
mod leaks;
mod logins;
mod migrations;
mod openai;
mod pgvector;
mod platform;
mod providers;
mod reembed;
mod resilience;
mod roles;
mod sessions;
mod storm;
mod suspension;
mod uploads;
