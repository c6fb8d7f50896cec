//! `helpdesk kb import DIR`: every Markdown, HTML and text file under DIR
//! becomes a KB article of the tenant (id: its path; title: its first
//! heading, else the file name), embedded in-process and indexed in the
//! same qdrant-edge shard the service uses. Unchanged files are skipped, so
//! an interrupted import is finished by running it again.
//!
//! `helpdesk kb snapshot DEST`: a consistent copy of the vector index.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::ai::kb::{Article, KbService};
use crate::config::Settings;
use crate::kb::Format;
use crate::vector::Visibility;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A folder of .md, .markdown, .html, .htm and .txt files (searched recursively).
    pub dir: PathBuf,
    #[arg(long, default_value = "default")]
    pub tenant: String,
    #[arg(long, value_enum, default_value = "public")]
    pub visibility: VisibilityArg,
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Tags for every imported article, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum VisibilityArg {
    Public,
    Internal,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            files(&p, out)?;
        } else if format_of(&p).is_some() {
            out.push(p);
        }
    }
    Ok(())
}

fn format_of(p: &Path) -> Option<Format> {
    match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "md" | "markdown" => Some(Format::Markdown),
        "html" | "htm" => Some(Format::Html),
        "txt" => Some(Format::Text),
        _ => None,
    }
}

/// The article id of a file: its path under DIR, `/` as `:`, other
/// characters outside the id alphabet as `-`.
pub fn article_id(rel: &Path) -> String {
    rel.to_string_lossy()
        .chars()
        .map(|c| match c {
            '/' | '\\' => ':',
            c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
            _ => '-',
        })
        .take(200)
        .collect()
}

/// `helpdesk kb snapshot DEST`: prints JSON with the engine and where the
/// snapshot is.
pub fn snapshot(dest: &Path, settings: &Settings) -> anyhow::Result<()> {
    let dims = crate::inference::Registry::builtin()
        .get(&settings.model.name)
        .map(|s| s.dims)
        .context("the configured model")?;
    let index = crate::vector::open_index(settings, dims).context("open the vector index")?;
    let at = index.snapshot(dest)?;
    println!(
        "{}",
        serde_json::json!({ "engine": index.engine(), "snapshot": at })
    );
    Ok(())
}

pub fn import(args: &ImportArgs, settings: &Settings) -> anyhow::Result<()> {
    crate::ml::store::check_name("tenant", &args.tenant)?;
    let mut paths = Vec::new();
    files(&args.dir, &mut paths).with_context(|| format!("read {}", args.dir.display()))?;
    anyhow::ensure!(
        !paths.is_empty(),
        "no .md, .html or .txt files under {}",
        args.dir.display()
    );
    let enc = crate::inference::load_text_encoder(
        &settings.model.name,
        &settings.models_dir,
        settings.model.device,
        settings.model.allow_download,
    )?;
    let index = crate::vector::open_index(settings, enc.dims()).context("open the vector index")?;
    let kb = KbService::new(index, &settings.data_dir.join("kb"));
    let tokenizer = enc.tokenizer().clone();
    let count = |t: &str| {
        tokenizer
            .tokenize(&[t], true)
            .map(|v| v[0].untruncated_len.saturating_sub(2))
            .unwrap_or(t.len() / 4)
    };
    let embed =
        |texts: &[&str]| -> anyhow::Result<Vec<Vec<f32>>> { Ok(enc.embed(texts, true, true)?) };
    let bar = ProgressBar::new(paths.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} {elapsed} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix("importing");
    let (mut indexed, mut unchanged, mut chunks) = (0usize, 0usize, 0usize);
    let mut failed = Vec::new();
    for p in &paths {
        let rel = p.strip_prefix(&args.dir).unwrap_or(p);
        bar.set_message(rel.display().to_string());
        let result = (|| -> anyhow::Result<(&'static str, usize)> {
            let body =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            let format = format_of(p).unwrap_or(Format::Text);
            let title = crate::kb::sections(&body, format)
                .iter()
                .find_map(|s| s.headings.first().cloned())
                .unwrap_or_else(|| {
                    p.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
            let article = Article {
                id: article_id(rel),
                title,
                body,
                format,
                visibility: match args.visibility {
                    VisibilityArg::Public => Visibility::Public,
                    VisibilityArg::Internal => Visibility::Internal,
                },
                tags: args.tags.clone(),
                language: args.language.clone(),
            };
            anyhow::ensure!(!article.body.trim().is_empty(), "empty file");
            kb.ingest(&args.tenant, &article, &embed, &count)
        })();
        match result {
            Ok(("unchanged", n)) => {
                unchanged += 1;
                chunks += n;
            }
            Ok((_, n)) => {
                indexed += 1;
                chunks += n;
            }
            Err(e) => failed.push(serde_json::json!({ "file": rel, "error": format!("{e:#}") })),
        }
        bar.inc(1);
    }
    bar.finish_with_message("done");
    kb.index.optimize()?;
    kb.index.flush()?;
    println!(
        "{}",
        serde_json::json!({ "tenant": args.tenant, "files": paths.len(), "indexed": indexed,
            "unchanged": unchanged, "failed": failed, "chunks": chunks })
    );
    anyhow::ensure!(failed.is_empty(), "{} files failed", failed.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_paths() {
        assert_eq!(
            article_id(Path::new("vpn/error 809.md")),
            "vpn:error-809.md"
        );
        assert_eq!(format_of(Path::new("a.HTML")), Some(Format::Html));
        assert_eq!(format_of(Path::new("a.pdf")), None);
    }
}
