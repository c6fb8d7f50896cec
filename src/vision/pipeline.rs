//! The attachment-check pipeline as data (`pipelines/attachment-checks.toml`):
//! each step on or off with its thresholds, and per-tenant overrides.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DecodeLimits, QualityThresholds};

/// The pipeline file compiled into the binary (the default).
pub const DEFAULT_TOML: &str = include_str!("../../pipelines/attachment-checks.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeStep {
    pub max_bytes: usize,
    pub max_pixels: u64,
    pub max_side: u32,
    pub max_alloc_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityStep {
    pub enabled: bool,
    pub blur_variance: f64,
    pub dark_mean: f64,
    pub bright_mean: f64,
    pub min_short_side: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhashStep {
    pub enabled: bool,
    pub near_duplicate_distance: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindStep {
    pub enabled: bool,
    pub screenshot_flat_share: f64,
    pub embedding: bool,
    /// The tenant's image heads (tasks trained on image embeddings with
    /// `helpdesk train --images`) run on every checked image.
    #[serde(default)]
    pub heads: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrStep {
    pub enabled: bool,
    pub kinds: Vec<String>,
    pub min_confidence: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarcodeStep {
    pub enabled: bool,
    pub kinds: Vec<String>,
    pub max_pixels: u64,
}

/// Every step's settings for one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub decode: DecodeStep,
    pub exif: Toggle,
    pub quality: QualityStep,
    pub phash: PhashStep,
    pub kind: KindStep,
    pub ocr: OcrStep,
    pub barcodes: BarcodeStep,
    pub pii: Toggle,
}

impl Steps {
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_bytes: self.decode.max_bytes,
            max_pixels: self.decode.max_pixels,
            max_side: self.decode.max_side,
            max_alloc: self.decode.max_alloc_mb.saturating_mul(1024 * 1024),
        }
    }

    pub fn quality_thresholds(&self) -> QualityThresholds {
        QualityThresholds {
            blur_variance: self.quality.blur_variance,
            dark_mean: self.quality.dark_mean,
            bright_mean: self.quality.bright_mean,
            min_short_side: self.quality.min_short_side,
        }
    }
}

impl Default for Steps {
    fn default() -> Self {
        Pipeline::builtin().base
    }
}

/// The pipeline: the base steps and each tenant's.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub base: Steps,
    tenants: BTreeMap<String, Steps>,
}

impl Pipeline {
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_TOML).expect("pipelines/attachment-checks.toml is checked by a test")
    }

    /// Reads a pipeline file (`None`: the built-in one).
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        crate::triage::pipeline::load_file(path, Self::builtin, Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut doc: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let tenants = match doc.remove("tenants") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err("`tenants` must be a table".into()),
        };
        let base: Steps = toml::Value::Table(doc.clone())
            .try_into()
            .map_err(|e| format!("{e}"))?;
        check(&base, "the base steps")?;
        let mut out = BTreeMap::new();
        for (tenant, over) in tenants {
            let toml::Value::Table(over) = over else {
                return Err(format!("tenants.{tenant:?} must be a table"));
            };
            let mut merged = doc.clone();
            for (step, keys) in over {
                let (Some(toml::Value::Table(into)), toml::Value::Table(keys)) =
                    (merged.get_mut(&step), keys)
                else {
                    return Err(format!("tenants.{tenant:?}.{step}: no such step"));
                };
                into.extend(keys);
            }
            let steps: Steps = toml::Value::Table(merged)
                .try_into()
                .map_err(|e| format!("tenants.{tenant:?}: {e}"))?;
            check(&steps, &format!("tenant {tenant:?}"))?;
            out.insert(tenant, steps);
        }
        Ok(Self { base, tenants: out })
    }

    /// The steps `tenant` runs.
    pub fn for_tenant(&self, tenant: &str) -> &Steps {
        self.tenants.get(tenant).unwrap_or(&self.base)
    }
}

fn check(s: &Steps, what: &str) -> Result<(), String> {
    let kinds = ["screenshot", "document", "hardware", "photo"];
    for (step, list) in [("ocr", &s.ocr.kinds), ("barcodes", &s.barcodes.kinds)] {
        if let Some(k) = list.iter().find(|k| !kinds.contains(&k.as_str())) {
            return Err(format!(
                "{what}: {step}.kinds has {k:?}; kinds are {kinds:?}"
            ));
        }
    }
    if s.phash.near_duplicate_distance > 32 {
        return Err(format!(
            "{what}: phash.near_duplicate_distance is at most 32"
        ));
    }
    if !(0.0..=1.0).contains(&s.kind.screenshot_flat_share) {
        return Err(format!(
            "{what}: kind.screenshot_flat_share is a share (0 to 1)"
        ));
    }
    if s.decode.max_bytes == 0 || s.decode.max_pixels == 0 || s.decode.max_side == 0 {
        return Err(format!("{what}: decode limits must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_file_parses_with_every_step_on() {
        let p = Pipeline::builtin();
        let s = &p.base;
        assert!(s.exif.enabled && s.quality.enabled && s.phash.enabled);
        assert!(s.kind.enabled && s.ocr.enabled && s.barcodes.enabled && s.pii.enabled);
        assert_eq!(s.limits().max_bytes, 20 * 1024 * 1024);
    }

    #[test]
    fn a_tenant_overrides_single_keys_and_keeps_the_rest() {
        let text = format!(
            "{DEFAULT_TOML}\n[tenants.\"acme\".ocr]\nenabled = false\n\
             [tenants.\"acme\".phash]\nnear_duplicate_distance = 2\n"
        );
        let p = Pipeline::parse(&text).unwrap();
        let acme = p.for_tenant("acme");
        assert!(!acme.ocr.enabled);
        assert_eq!(acme.phash.near_duplicate_distance, 2);
        assert!(
            acme.phash.enabled,
            "a key not overridden keeps the base value"
        );
        assert!(p.for_tenant("other").ocr.enabled);
    }

    #[test]
    fn typos_and_bad_values_are_refused_with_the_place() {
        let e = Pipeline::parse(&format!(
            "{DEFAULT_TOML}\n[tenants.\"a\".orc]\nenabled = false\n"
        ))
        .unwrap_err();
        assert!(e.contains("orc"), "{e}");
        let e = Pipeline::parse(&DEFAULT_TOML.replace("embedding = false", "embeding = false"))
            .unwrap_err();
        assert!(e.contains("embeding"), "{e}");
        let e = Pipeline::parse(&DEFAULT_TOML.replace(
            "near_duplicate_distance = 6",
            "near_duplicate_distance = 40",
        ))
        .unwrap_err();
        assert!(e.contains("near_duplicate_distance"), "{e}");
    }
}
