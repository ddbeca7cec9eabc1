//! Repositories: the only modules with SQL for the API's tables. Every function takes a tenant
//! transaction (from `runtime::db::begin_tenant`) or, for operator commands, the admin pool.

pub mod audit;
pub mod channels;
pub mod leads;
pub mod tenants;
pub mod users;
