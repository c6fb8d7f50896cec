//! Versioned label heads per tenant and task, under the data directory:
//!
//! ```text
//! <data_dir>/heads/<tenant>/<task>/v0001/{card.json, head.safetensors, examples.json}
//! <data_dir>/heads/<tenant>/<task>/state.json   {"active": 1, "history": [...], "events": [...]}
//! ```
//!
//! Heads shipped with the service live in `<models_dir>/heads/<task>/` and
//! are version 0 of that task for every tenant until the tenant promotes its
//! own. Versions are written to a temporary folder and renamed into place,
//! and the state file is replaced atomically, so a crash never leaves a half
//! version active and the service can reload whatever `state.json` names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{now_utc, Classifier, ModelCard, ModelError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid {what} {name:?}: use 1-64 letters, digits, '-' or '_'")]
    Name { what: &'static str, name: String },
    #[error("task {task:?} has no model for tenant {tenant:?}")]
    NoModel { tenant: String, task: String },
    #[error("task {task:?} has no version {version}")]
    NoVersion { task: String, version: u32 },
    #[error("task {0:?} has no earlier version to roll back to")]
    NothingToRollBack(String),
    #[error("task {task:?} reads {reads}, not {asked}")]
    Modality {
        task: String,
        reads: &'static str,
        asked: &'static str,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model store: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// `None`: the shipped version 0 (if any).
    pub active: Option<u32>,
    /// Versions that were active before, most recent last (for rollback).
    pub history: Vec<Option<u32>>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub action: String,
    pub version: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
    builtin: PathBuf,
}

/// Tenant and task names become folder names: keep them boring.
pub fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Name {
            what,
            name: name.to_string(),
        })
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

impl ModelStore {
    pub fn new(data_dir: &Path, models_dir: &Path) -> Self {
        Self {
            root: data_dir.join("heads"),
            builtin: models_dir.join("heads"),
        }
    }

    fn task_dir(&self, tenant: &str, task: &str) -> Result<PathBuf, StoreError> {
        check_name("tenant", tenant)?;
        check_name("task", task)?;
        Ok(self.root.join(tenant).join(task))
    }

    fn builtin_dir(&self, task: &str) -> Option<PathBuf> {
        let d = self.builtin.join(task);
        d.join("card.json").is_file().then_some(d)
    }

    /// Where version `v` lives (0: the shipped one).
    pub fn version_dir(&self, tenant: &str, task: &str, v: u32) -> Result<PathBuf, StoreError> {
        let dir = if v == 0 {
            self.builtin_dir(task)
        } else {
            Some(self.task_dir(tenant, task)?.join(format!("v{v:04}")))
        };
        dir.filter(|d| d.join("card.json").is_file())
            .ok_or_else(|| StoreError::NoVersion {
                task: task.into(),
                version: v,
            })
    }

    pub fn state(&self, tenant: &str, task: &str) -> Result<State, StoreError> {
        let p = self.task_dir(tenant, task)?.join("state.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                StoreError::Io(std::io::Error::other(format!("{}: {e}", p.display())))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn save_state(&self, tenant: &str, task: &str, s: &State) -> Result<(), StoreError> {
        let dir = self.task_dir(tenant, task)?;
        std::fs::create_dir_all(&dir)?;
        let bytes = serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?;
        Ok(write_atomic(&dir.join("state.json"), &bytes)?)
    }

    /// The active version (0 = shipped), or `None` when the task has none.
    pub fn active(&self, tenant: &str, task: &str) -> Result<Option<u32>, StoreError> {
        match self.state(tenant, task)?.active {
            Some(v) => Ok(Some(v)),
            None => Ok(self.builtin_dir(task).map(|_| 0)),
        }
    }

    /// Every version of the task (0 first when a shipped one exists).
    pub fn versions(&self, tenant: &str, task: &str) -> Result<Vec<u32>, StoreError> {
        let mut out: Vec<u32> = self.builtin_dir(task).map(|_| 0).into_iter().collect();
        if let Ok(rd) = std::fs::read_dir(self.task_dir(tenant, task)?) {
            let mut v: Vec<u32> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
                .collect();
            v.sort_unstable();
            out.extend(v);
        }
        Ok(out)
    }

    /// Task names with a model for the tenant (its own or shipped).
    pub fn tasks(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        check_name("tenant", tenant)?;
        let mut out = Vec::new();
        for dir in [self.root.join(tenant), self.builtin.clone()] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                out.extend(rd.filter_map(|e| e.ok()).filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    check_name("task", &name).ok().map(|_| name)
                }));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn card(&self, tenant: &str, task: &str, v: u32) -> Result<ModelCard, StoreError> {
        let p = self.version_dir(tenant, task, v)?.join("card.json");
        let bytes = std::fs::read(&p)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Io(std::io::Error::other(format!("{}: {e}", p.display()))))
    }

    pub fn load(&self, tenant: &str, task: &str, v: u32) -> Result<Classifier, StoreError> {
        Ok(Classifier::load(&self.version_dir(tenant, task, v)?)?)
    }

    /// The active version, loaded.
    pub fn load_active(&self, tenant: &str, task: &str) -> Result<Classifier, StoreError> {
        let v = self
            .active(tenant, task)?
            .ok_or_else(|| StoreError::NoModel {
                tenant: tenant.into(),
                task: task.into(),
            })?;
        self.load(tenant, task, v)
    }

    /// Writes `model` as the task's next version (not yet active) and
    /// returns its number; the card's version is set to it.
    pub fn save_new(&self, model: &mut Classifier) -> Result<u32, StoreError> {
        let (tenant, task) = (model.card.tenant.clone(), model.card.task.clone());
        let dir = self.task_dir(&tenant, &task)?;
        std::fs::create_dir_all(&dir)?;
        let mut v = self.versions(&tenant, &task)?.last().copied().unwrap_or(0) + 1;
        loop {
            let tmp = dir.join(format!(".v{v:04}.tmp{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            model.card.version = v;
            model.save(&tmp)?;
            // Another trainer may have taken this number: try the next one.
            match std::fs::rename(&tmp, dir.join(format!("v{v:04}"))) {
                Ok(()) => return Ok(v),
                Err(_) if dir.join(format!("v{v:04}")).exists() => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    v += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes `v` the active version; the one before goes on the history.
    pub fn promote(&self, tenant: &str, task: &str, v: u32) -> Result<(), StoreError> {
        self.version_dir(tenant, task, v)?;
        let mut s = self.state(tenant, task)?;
        let target = (v != 0).then_some(v);
        if s.active == target {
            return Ok(());
        }
        s.history.push(s.active);
        s.active = target;
        s.events.push(Event {
            at: now_utc(),
            action: "promote".into(),
            version: Some(v),
        });
        self.save_state(tenant, task, &s)
    }

    /// Makes the previously active version active again; returns it.
    pub fn rollback(&self, tenant: &str, task: &str) -> Result<u32, StoreError> {
        let mut s = self.state(tenant, task)?;
        let previous = loop {
            match s.history.pop() {
                // Skip entries whose files are gone (or a shipped head since removed).
                Some(p) if self.version_dir(tenant, task, p.unwrap_or(0)).is_ok() => break p,
                Some(_) => continue,
                None => return Err(StoreError::NothingToRollBack(task.into())),
            }
        };
        s.active = previous;
        s.events.push(Event {
            at: now_utc(),
            action: "rollback".into(),
            version: Some(previous.unwrap_or(0)),
        });
        self.save_state(tenant, task, &s)?;
        Ok(previous.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::model::HeadKind;

    fn model(tenant: &str) -> Classifier {
        let mut card = crate::ml::model::test_card(HeadKind::Knn, 2);
        card.tenant = tenant.into();
        Classifier::knn(
            card,
            vec![
                ("x".into(), 0, vec![1.0, 0.0]),
                ("y".into(), 1, vec![0.0, 1.0]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn versions_promote_and_roll_back_per_tenant() {
        let root = std::env::temp_dir().join(format!("helpdesk-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = ModelStore::new(&root, &root.join("no-shipped"));
        assert_eq!(store.active("acme", "team").unwrap(), None);
        let v1 = store.save_new(&mut model("acme")).unwrap();
        let v2 = store.save_new(&mut model("acme")).unwrap();
        assert_eq!((v1, v2), (1, 2));
        assert_eq!(store.versions("acme", "team").unwrap(), vec![1, 2]);
        assert_eq!(
            store.active("acme", "team").unwrap(),
            None,
            "saving does not promote"
        );
        store.promote("acme", "team", 1).unwrap();
        store.promote("acme", "team", 2).unwrap();
        assert_eq!(store.load_active("acme", "team").unwrap().card.version, 2);
        assert_eq!(store.rollback("acme", "team").unwrap(), 1);
        assert!(matches!(
            store.rollback("acme", "team"),
            Err(StoreError::NothingToRollBack(_))
        ));
        assert_eq!(store.active("acme", "team").unwrap(), Some(1));
        // Another tenant has nothing; bad names never reach the file system.
        assert!(matches!(
            store.load_active("globex", "team"),
            Err(StoreError::NoModel { .. })
        ));
        assert!(matches!(
            store.active("../acme", "team"),
            Err(StoreError::Name { .. })
        ));
        assert!(matches!(
            store.promote("acme", "team", 7),
            Err(StoreError::NoVersion { .. })
        ));
        assert_eq!(store.state("acme", "team").unwrap().events.len(), 3);
        let _ = std::fs::remove_dir_all(root);
    }
}
