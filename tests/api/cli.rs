use std::process::Command;

use serde_json::Value;

use crate::helpers::{cosine, models_dir, reference, repo_path, require_model};

fn helpdesk() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_helpdesk"));
    c.current_dir(repo_path(""))
        .env_remove("RUST_LOG")
        .arg("--models-dir")
        .arg(models_dir());
    c
}

#[test]
fn embed_prints_json_vectors_that_match_the_reference() {
    require_model();
    let r = &reference()[0];
    let out = helpdesk()
        .args(["embed", &r.text, "second text"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["dims"], 384);
    let vecs: Vec<Vec<f32>> = serde_json::from_value(v["embeddings"].clone()).unwrap();
    assert_eq!(vecs.len(), 2);
    assert!(cosine(&vecs[0], &r.embedding) >= 0.9999);
}

#[test]
fn models_verify_and_list_report_the_fetched_model() {
    require_model();
    let out = helpdesk().args(["models", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["ok"], true);
    let out = helpdesk().args(["models", "list"]).output().unwrap();
    let line: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["model"], "all-minilm-l6-v2");
    assert_eq!(line["present"], true);
}

#[test]
fn verify_fails_on_a_corrupted_file_and_embed_names_the_fix_when_missing() {
    let tmp = std::env::temp_dir().join(format!("helpdesk-cli-{}", std::process::id()));
    let dir = tmp.join("all-minilm-l6-v2");
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::write(dir.join(f), b"not the real file").unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .args(["--models-dir", tmp.to_str().unwrap(), "models", "verify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("sha256"));
    std::fs::remove_dir_all(&tmp).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .env("HELPDESK__MODEL__ALLOW_DOWNLOAD", "false")
        .args(["--models-dir", tmp.to_str().unwrap(), "embed", "hello"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fetch-models.sh"));
}

#[test]
fn unknown_subcommands_and_bad_flags_fail_with_usage() {
    let out = helpdesk()
        .args(["serve", "--device", "tpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}
