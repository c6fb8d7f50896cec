#![recursion_limit = "256"] // the hand-written OpenAPI document is one large json! literal
//! helpdesk-ai: a self-hosted helpdesk whose heart is a local AI-analysis
//! service. See DESIGN notes in README.md for the module map.

pub mod ai;
pub mod cli;
pub mod config;
pub mod error;
pub mod inference;
pub mod kb;
pub mod kb_cli;
pub mod metrics;
pub mod ml;
pub mod ml_cli;
pub mod security;
pub mod startup;
pub mod telemetry;
pub mod ticketing;
pub mod ticketing_cli;
pub mod triage;
pub mod vector;
pub mod vision;
