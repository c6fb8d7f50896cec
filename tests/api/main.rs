//! Integration tests: one binary (one link), a real server per test.
mod branch;
mod classify_api;
mod cli;
mod core_api;
mod embed_api;
mod encoder;
mod heads;
mod helpers;
mod kb_api;
mod ops_api;
