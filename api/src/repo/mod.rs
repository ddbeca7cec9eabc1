//! Repositories: the only modules with SQL for the API's tables. Every function takes a tenant
//! transaction (from `runtime::db::begin_tenant`) or, for operator commands, the admin pool.

pub mod channels;
pub mod tenants;
pub mod users;
