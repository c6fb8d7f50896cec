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

/// `helpdesk train`, `eval --json` and `heads` on the jargon fixture, in a
/// temporary data directory.
#[test]
fn train_eval_and_heads_commands_version_a_task() {
    require_model();
    let data = crate::helpers::data_dir();
    let fixtures = tempfile::tempdir().unwrap();
    let mut rows = csv::Reader::from_path(repo_path("tests/fixtures/jargon_tickets.csv")).unwrap();
    let (mut train, mut test) = (String::from("text,label\n"), String::from("text,label\n"));
    for r in rows.records() {
        let r = r.unwrap();
        let line = format!("\"{}\",{}\n", r[0].replace('"', "\"\""), &r[1]);
        if &r[2] == "train" {
            train += &line
        } else {
            test += &line
        }
    }
    let (train_csv, test_csv) = (
        fixtures.path().join("train.csv"),
        fixtures.path().join("test.csv"),
    );
    std::fs::write(&train_csv, train).unwrap();
    std::fs::write(&test_csv, test).unwrap();
    let run = |args: &[&str]| crate::helpers::cli_json(data.path(), args);
    let t = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let first = run(&[
        "train",
        "--task",
        "team",
        "--data",
        &t(&train_csv),
        "--heldout",
        &t(&test_csv),
        "--seed",
        "3",
    ]);
    assert_eq!(first["version"], 1);
    assert_eq!(first["promoted"], true);
    let report_files: Vec<String> = serde_json::from_value(first["report"].clone()).unwrap();
    assert!(report_files.iter().any(|f| f.ends_with(".md")));
    for f in &report_files {
        assert!(std::path::Path::new(f).is_file(), "{f}");
    }
    // Same data, same seed: an equal score passes the gate.
    let second = run(&[
        "train",
        "--task",
        "team",
        "--data",
        &t(&train_csv),
        "--heldout",
        &t(&test_csv),
        "--seed",
        "3",
    ]);
    assert_eq!(second["version"], 2);
    assert_eq!(second["promoted"], true, "{}", second["gate"]);
    assert_eq!(second["gate"]["candidate"], second["gate"]["active"]);

    let eval = run(&["eval", "--task", "team", "--data", &t(&test_csv), "--json"]);
    for key in crate::helpers::REPORT_KEYS {
        assert!(eval.get(key).is_some(), "eval --json lacks {key}");
    }
    assert_eq!(eval["version"], 2);
    assert_eq!(eval["examples"], 21);
    assert_eq!(
        eval["accuracy"], first["metrics"]["accuracy"],
        "eval agrees with training's held-out score"
    );

    let back = run(&["heads", "rollback", "--task", "team"]);
    assert_eq!(back["active"], 1);
    let list = run(&["heads", "list", "--task", "team"]);
    assert_eq!(list["active"], 1);
    assert_eq!(list["versions"].as_array().unwrap().len(), 2);
    assert_eq!(
        list["versions"][0]["data_hash"],
        list["versions"][1]["data_hash"]
    );

    // A zero-shot head from descriptions, scored on the same test tickets.
    let desc = fixtures.path().join("descriptions.json");
    std::fs::write(
        &desc,
        r#"{"database": "SQL database errors", "devops": "build and deployment pipelines",
            "email": "Outlook and mail delivery", "endpoint": "laptops and installed software",
            "erp": "SAP transactions and purchase orders", "identity": "sign-in, passwords and MFA",
            "network": "VPN, Wi-Fi and DNS"}"#,
    )
    .unwrap();
    let zs = run(&[
        "train",
        "--task",
        "zs",
        "--descriptions",
        &t(&desc),
        "--heldout",
        &t(&test_csv),
    ]);
    assert_eq!(zs["kind"], "zero_shot");
    assert_eq!(zs["version"], 1);
    assert!(zs["metrics"]["accuracy"].as_f64().unwrap() > 0.3, "{zs}");

    // With examples, descriptions are one more training example per label.
    let aug = run(&[
        "train",
        "--task",
        "aug",
        "--data",
        &t(&train_csv),
        "--descriptions",
        &t(&desc),
        "--heldout",
        &t(&test_csv),
    ]);
    let list = run(&["heads", "list", "--task", "aug"]);
    assert_eq!(aug["kind"], "softmax");
    assert_eq!(list["versions"][0]["train_examples"], 42 + 7);

    // Unlabelled texts: those repeating a labelled or held-out ticket are
    // left out, the others get propagated labels and train the head.
    let unlabelled = fixtures.path().join("unlabelled.csv");
    let mut texts = String::from("text\n");
    for r in csv::Reader::from_path(repo_path("tests/fixtures/jargon_tickets.csv"))
        .unwrap()
        .records()
    {
        texts += &format!("\"{}\"\n", r.unwrap()[0].replace('"', "\"\""));
    }
    texts += "ME21N dumps when saving the purchase order\nVPN drops every hour since Monday\n";
    texts += "\"Outlook will not send to external addresses, 550 5.7.1\"\n";
    std::fs::write(&unlabelled, texts).unwrap();
    let semi = run(&[
        "train",
        "--task",
        "semi",
        "--data",
        &t(&train_csv),
        "--heldout",
        &t(&test_csv),
        "--unlabelled",
        &t(&unlabelled),
    ]);
    let used = &semi["training"]["unlabelled"];
    assert_eq!(used["given"], 63 + 3, "{used}");
    assert_eq!(used["used"], 3, "{used}");
    // The propagated labels trained the head that was kept, or were set aside.
    let trained = if used["kept"] == true { 3 } else { 0 };
    assert_eq!(
        semi["training"]["head"]["pseudo_labelled"], trained,
        "{used}"
    );
    for bad in [
        vec!["--unlabelled", &t(&unlabelled), "--unlabelled-weight", "0"],
        vec!["--unlabelled-weight", "0.5"],
    ] {
        let out = helpdesk()
            .arg("--data-dir")
            .arg(data.path())
            .args(["train", "--task", "semi", "--data", &t(&train_csv)])
            .args(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unlabelled"),
            "{bad:?}"
        );
    }

    // Bad input: a clear error, nothing written.
    let out = helpdesk()
        .arg("--data-dir")
        .arg(data.path())
        .args(["train", "--task", "team", "--data", "/nonexistent.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.csv"));
    assert_eq!(
        run(&["heads", "list", "--task", "team"])["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// The shipped sentiment head on a fresh data directory, scored on SST-2's dev
/// set (binary: negative vs positive) and on ticket-like sentences.
#[test]
fn shipped_sentiment_head_scores_sst2_dev_and_ticket_sentences() {
    require_model();
    let data = crate::helpers::data_dir();
    let eval = |file: &str, extra: &[&str]| {
        let file = repo_path(file);
        let mut args = vec!["eval", "--task", "sentiment", "--json", "--data"];
        args.push(file.to_str().unwrap());
        args.extend(extra);
        crate::helpers::cli_json(data.path(), &args)
    };
    let sst2 = eval(
        "tests/fixtures/sst2_dev.tsv",
        &["--label-map", "0=negative,1=positive"],
    );
    let tickets = eval("tests/fixtures/ticket_sentiment.csv", &[]);
    let (a, b) = (
        sst2["accuracy"].as_f64().unwrap(),
        tickets["accuracy"].as_f64().unwrap(),
    );
    eprintln!("sentiment: SST-2 dev accuracy {a:.4}, ticket sentences {b:.4}");
    assert_eq!(sst2["examples"], 872);
    assert_eq!(tickets["examples"], 30);
    assert!(a >= FLOOR_SST2_DEV, "SST-2 dev accuracy {a}");
    assert!(b >= FLOOR_TICKET_SENTIMENT, "ticket sentence accuracy {b}");
}

/// Measured 0.8039 with the shipped head; a regression below this fails.
const FLOOR_SST2_DEV: f64 = 0.79;
/// Measured 0.80 (24 of 30).
const FLOOR_TICKET_SENTIMENT: f64 = 0.76;
