//! Integration tests of the `api` crate: one binary, real PostgreSQL, the real router on port 0,
//! and the real `wasit` binary for the command line.

mod agents;
mod auth;
mod background;
mod chat;
mod cli;
mod commissions;
mod contacts;
mod conversation;
mod crash;
mod deals;
mod embedded;
mod guarantees;
mod health;
mod helpers;
mod knowledge;
mod leads;
mod llm;
mod llm_turns;
mod matrix;
mod meetings;
mod platform;
mod proposals;
mod rls;
mod whatsapp;
