//! Integration tests: one binary (one link), a real server per test.
mod branch;
mod classify_api;
mod cli;
mod core_api;
mod embed_api;
mod encoder;
mod events_api;
mod heads;
mod helpers;
mod kb_api;
mod ops_api;
mod roles;
mod triage_api;
