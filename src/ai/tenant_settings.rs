//! A tenant's thresholds for suggestions, duplicates and incidents: one
//! JSON file per tenant under `<data_dir>/tenants/`, read once and cached.
//! (The ticketing core's tenants table takes them over when it exists.)
//!
//! `GET /v1/settings` returns them (the defaults until set); `PUT
//! /v1/settings` replaces them (fields left out take their defaults) and
//! applies from the next request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::tenant::Tenant;
use super::AiState;
use crate::error::{ApiError, ApiJson};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// KB suggestions below this cosine are left out.
    pub suggest_threshold: f32,
    /// An earlier ticket at or above this cosine, within the window, is a
    /// probable duplicate.
    pub duplicate_threshold: f32,
    pub duplicate_window_hours: i64,
    /// An incident: at least this many tickets ...
    pub incident_min_tickets: usize,
    /// ... within this many minutes ...
    pub incident_window_minutes: i64,
    /// ... every pair of them at or above this cosine (mutual near-neighbours).
    pub incident_similarity: f32,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            suggest_threshold: 0.35,
            duplicate_threshold: 0.9,
            duplicate_window_hours: 72,
            incident_min_tickets: 3,
            incident_window_minutes: 30,
            incident_similarity: 0.75,
        }
    }
}

impl TenantSettings {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("suggest_threshold", self.suggest_threshold),
            ("duplicate_threshold", self.duplicate_threshold),
            ("incident_similarity", self.incident_similarity),
        ] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(format!("{name} must be a cosine within -1 and 1"));
            }
        }
        if !(1..=24 * 365).contains(&self.duplicate_window_hours) {
            return Err("duplicate_window_hours must be within 1 and 8760".into());
        }
        if !(2..=50).contains(&self.incident_min_tickets) {
            return Err("incident_min_tickets must be within 2 and 50".into());
        }
        if !(1..=24 * 60).contains(&self.incident_window_minutes) {
            return Err("incident_window_minutes must be within 1 and 1440".into());
        }
        Ok(())
    }
}

/// Every tenant's settings, from their files.
pub struct SettingsStore {
    dir: PathBuf,
    cache: Mutex<HashMap<String, TenantSettings>>,
}

impl SettingsStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("tenants"),
            cache: Mutex::default(),
        }
    }

    fn path(&self, tenant: &str) -> PathBuf {
        self.dir.join(format!("{tenant}.json"))
    }

    /// The tenant's settings (defaults when never set). `tenant` is a
    /// checked name (`Tenant`).
    pub fn get(&self, tenant: &str) -> std::io::Result<TenantSettings> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(tenant) {
            return Ok(s.clone());
        }
        let s = match std::fs::read(self.path(tenant)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TenantSettings::default(),
            Err(e) => return Err(e),
        };
        cache.insert(tenant.to_string(), s.clone());
        Ok(s)
    }

    /// Stores them (atomically: a temporary file renamed over the old one).
    pub fn put(&self, tenant: &str, s: &TenantSettings) -> std::io::Result<()> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{tenant}.json.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, self.path(tenant))?;
        cache.insert(tenant.to_string(), s.clone());
        Ok(())
    }
}

pub fn router() -> Router<AiState> {
    Router::new().route("/v1/settings", get(read).put(write))
}

async fn read(
    State(state): State<AiState>,
    tenant: Tenant,
) -> Result<ApiJson<TenantSettings>, ApiError> {
    Ok(ApiJson(state.tenant_settings(&tenant.0)?))
}

async fn write(
    State(state): State<AiState>,
    tenant: Tenant,
    ApiJson(s): ApiJson<TenantSettings>,
) -> Result<ApiJson<TenantSettings>, ApiError> {
    s.check().map_err(ApiError::validation)?;
    state
        .tenant_settings
        .put(&tenant.0, &s)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(ApiJson(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_until_set_then_the_stored_values_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::new(dir.path());
        assert_eq!(store.get("acme").unwrap(), TenantSettings::default());
        let s = TenantSettings {
            suggest_threshold: 0.5,
            ..TenantSettings::default()
        };
        store.put("acme", &s).unwrap();
        assert_eq!(store.get("acme").unwrap().suggest_threshold, 0.5);
        assert_eq!(store.get("globex").unwrap(), TenantSettings::default());
        // Read back from the file by a fresh store (another process).
        let again = SettingsStore::new(dir.path());
        assert_eq!(again.get("acme").unwrap(), s);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let ok = TenantSettings::default();
        assert!(ok.check().is_ok());
        for bad in [
            TenantSettings {
                suggest_threshold: 1.5,
                ..ok.clone()
            },
            TenantSettings {
                incident_min_tickets: 1,
                ..ok.clone()
            },
            TenantSettings {
                incident_window_minutes: 0,
                ..ok.clone()
            },
            TenantSettings {
                duplicate_window_hours: -3,
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
