//! Integration tests: one binary (one link), a real server per test.

/// Each named `async fn(Backend)` as two tests, `<name>::sqlite` and
/// `<name>::postgres` (the module using it imports `Backend`).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

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
mod vision_api;
