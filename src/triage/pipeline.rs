//! Triage pipelines as data (`pipelines/triage.toml`): the steps a ticket's
//! triage runs, by name. A tenant chooses one in its settings; the worker
//! sends the name with each triage request and the AI service runs it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The heads whose answers route a ticket (each sets its own field).
pub const ROUTING_TASKS: [&str; 3] = ["category", "team", "priority"];

/// The pipeline every tenant has until it picks another.
pub const DEFAULT: &str = "standard";

const BUILTIN: &str = include_str!("../../pipelines/triage.toml");

/// One pipeline's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriagePipeline {
    /// Routing heads read (a subset of `ROUTING_TASKS`).
    pub routing: Vec<String>,
    pub sentiment: bool,
    pub urgency: bool,
    /// KB passages suggested (0: none).
    pub suggestions: usize,
    /// Similar earlier tickets listed (0: none).
    pub similar: usize,
    /// Read the OCR text of the ticket's image attachments.
    pub attachment_text: bool,
}

/// A pipeline file read and parsed (errors name the file), or the shipped
/// pipelines when no file is set: triage and attachment pipelines alike.
pub fn load_file<T>(
    path: Option<&Path>,
    builtin: fn() -> T,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, String> {
    let Some(p) = path else {
        return Ok(builtin());
    };
    let text = std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every pipeline of a file, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct TriagePipelines {
    by_name: BTreeMap<String, TriagePipeline>,
}

impl TriagePipelines {
    /// The shipped `pipelines/triage.toml` (checked by a test).
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("the shipped pipelines/triage.toml is valid")
    }

    /// `path`'s pipelines, or the shipped ones.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        load_file(path, Self::builtin, Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let by_name: BTreeMap<String, TriagePipeline> =
            toml::from_str(text).map_err(|e| e.to_string())?;
        if !by_name.contains_key(DEFAULT) {
            return Err(format!("no `{DEFAULT}` pipeline"));
        }
        for (name, p) in &by_name {
            crate::ml::store::check_name("pipeline", name).map_err(|e| e.to_string())?;
            if let Some(t) = p
                .routing
                .iter()
                .find(|t| !ROUTING_TASKS.contains(&t.as_str()))
            {
                return Err(format!(
                    "{name}.routing: {t:?} is not one of {}",
                    ROUTING_TASKS.join(", ")
                ));
            }
            if p.suggestions > 20 || p.similar > 50 {
                return Err(format!(
                    "{name}: at most 20 suggestions and 50 similar tickets"
                ));
            }
        }
        Ok(Self { by_name })
    }

    /// The pipeline called `name` (`None`: the default one).
    pub fn get(&self, name: Option<&str>) -> Option<&TriagePipeline> {
        self.by_name.get(name.unwrap_or(DEFAULT))
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_pipelines_parse_and_standard_runs_every_step() {
        let p = TriagePipelines::builtin();
        assert_eq!(p.names(), ["assist", "routing-only", "standard"]);
        let s = p.get(None).unwrap();
        assert_eq!(s.routing, ROUTING_TASKS);
        assert!(s.sentiment && s.urgency && s.attachment_text);
        assert!(s.suggestions > 0 && s.similar > 0);
        assert!(p.get(Some("assist")).unwrap().routing.is_empty());
        assert!(p.get(Some("nope")).is_none());
    }

    #[test]
    fn a_pipeline_file_without_standard_or_with_unknown_heads_is_refused() {
        let one = |name: &str, routing: &str| {
            format!(
                "[{name}]\nrouting = {routing}\nsentiment = true\nurgency = true\n\
                 suggestions = 3\nsimilar = 5\nattachment_text = true\n"
            )
        };
        assert!(TriagePipelines::parse(&one("standard", "[\"team\"]")).is_ok());
        let e = TriagePipelines::parse(&one("mine", "[\"team\"]")).unwrap_err();
        assert!(e.contains("standard"), "{e}");
        let e = TriagePipelines::parse(&one("standard", "[\"colour\"]")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e =
            TriagePipelines::parse(&one("standard", "[]").replace("similar = 5", "similar = 500"))
                .unwrap_err();
        assert!(e.contains("at most"), "{e}");
        let e = TriagePipelines::parse("[standard]\nrouting = []\n").unwrap_err();
        assert!(e.contains("missing"), "{e}");
    }
}
