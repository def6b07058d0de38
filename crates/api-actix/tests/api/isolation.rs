//! Tenant isolation: see below.
