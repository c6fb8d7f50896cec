//! Integration tests: one binary (one link), a real server per test.
mod cli;
mod embed_api;
mod encoder;
mod heads;
mod helpers;
mod ops_api;
