//! The HTTP edge: extractors, wire types, problem details, routes and the OpenAPI document.

pub mod dto;
pub mod error;
pub mod execution_dto;
pub mod extract;
pub mod openai;
pub mod openapi;
pub mod request_id;
pub mod responses;
pub mod routes;
pub mod rules;
pub mod upload;
