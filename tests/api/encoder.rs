//! The encoder against sentence-transformers' own vectors.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use helpdesk::inference::{bert, load_text_encoder, DeviceKind};

use crate::helpers::{cosine, models_dir, norm, reference, require_model, MODEL};

#[test]
fn every_reference_text_embeds_within_1e4_cosine_of_sentence_transformers() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let refs = reference();
    assert_eq!(refs.len(), 60);
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    // All at once (one packed batch) and one by one must both match.
    let batched = enc.embed(&texts, false, true).unwrap();
    let mut worst: f64 = 1.0;
    for (i, r) in refs.iter().enumerate() {
        let single = enc.embed(&[&r.text], false, true).unwrap().remove(0);
        let (cb, cs) = (
            cosine(&batched[i], &r.embedding),
            cosine(&single, &r.embedding),
        );
        assert!(cb >= 0.9999, "text {i} batched cosine {cb}: {}", r.text);
        assert!(cs >= 0.9999, "text {i} single cosine {cs}: {}", r.text);
        worst = worst.min(cb).min(cs);
    }
    eprintln!("worst cosine to reference: {worst:.7}");
}

#[test]
fn token_counts_match_the_reference_tokenizer_and_truncate_at_256() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let refs = reference();
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let toks = enc.tokenizer().tokenize(&texts, true).unwrap();
    let mut over_128 = 0;
    for (t, r) in toks.iter().zip(&refs) {
        assert_eq!(t.untruncated_len, r.tokens_untruncated, "{}", r.text);
        assert_eq!(t.ids.len(), r.tokens_untruncated.min(256));
        over_128 += usize::from(r.tokens_untruncated > 128);
    }
    // The fixture must exercise the tokenizer.json's 128-token trap.
    assert!(over_128 >= 3);
}

#[test]
fn too_long_input_without_truncate_is_an_error_naming_the_limit() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let long = "printer ".repeat(400);
    let err = enc.embed(&[&long], true, false).unwrap_err().to_string();
    assert!(err.contains("limit of 256"), "{err}");
}

#[test]
fn normalize_gives_unit_vectors_and_raw_vectors_keep_their_length() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let n = enc.embed(&["VPN is down"], true, false).unwrap().remove(0);
    let raw = enc.embed(&["VPN is down"], false, false).unwrap().remove(0);
    assert!((norm(&n) - 1.0).abs() < 1e-5);
    assert!(
        (norm(&raw) - 1.0).abs() > 0.01,
        "mean pooling is not unit length"
    );
    assert!(cosine(&n, &raw) > 0.99999);
}

/// The model's config and its weights, mapped, for building encoders by hand.
fn checkpoint() -> (
    candle_transformers::models::bert::Config,
    VarBuilder<'static>,
) {
    let dir = models_dir().join(MODEL);
    let cfg =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // Safety: the weights file is only read and not changed while mapped.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    (cfg, vb)
}

#[test]
fn packed_encoder_agrees_with_candle_transformers_padded_bert() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let (cfg, vb) = checkpoint();
    let reference = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    let texts = [
        "short",
        "a somewhat longer ticket about a broken monitor on floor three",
        "x y z",
    ];
    let toks = enc.tokenizer().tokenize(&texts, true).unwrap();
    let seqs: Vec<Vec<u32>> = toks.into_iter().map(|t| t.ids).collect();
    let padded = bert::reference_mean(&reference, &seqs, &Device::Cpu)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let packed = enc.embed(&texts, false, true).unwrap();
    for (a, b) in padded.iter().zip(&packed) {
        assert!(cosine(a, b) > 0.99999, "cosine {}", cosine(a, b));
    }
}

#[test]
fn padded_attention_path_used_on_gpus_agrees_with_the_fused_cpu_kernel() {
    require_model();
    let load = || {
        let (cfg, vb) = checkpoint();
        bert::PackedBert::load(vb, &cfg).unwrap()
    };
    let fused = load();
    let padded = load().with_padded_attention(true);
    let mut batch = bert::Packed::default();
    // Unequal lengths, so the gather, mask and un-gather are all exercised.
    batch.push(&[101, 7592, 2088, 102]);
    batch.push(&[101, 1996, 6140, 2003, 2006, 2543, 1999, 1996, 2436, 102]);
    batch.push(&[101, 102]);
    let a = fused
        .forward_mean(&batch)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let b = padded
        .forward_mean(&batch)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(cosine(x, y) > 0.99999, "cosine {}", cosine(x, y));
    }
}

/// The int8 (Q8_0) path is an experiment, not offered in config: it is slower
/// than f32 on this AVX2 CPU and its worst cosine, 0.9985, misses the 0.999
/// bar (BENCHMARKS.md). This keeps its measured accuracy from regressing.
#[test]
fn int8_experiment_stays_within_its_measured_accuracy() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false)
        .unwrap()
        .with_precision(bert::Precision::Int8)
        .unwrap();
    let refs = reference();
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let got = enc.embed(&texts, true, true).unwrap();
    let worst = got
        .iter()
        .zip(&refs)
        .map(|(g, r)| cosine(g, &r.embedding))
        .fold(1.0, f64::min);
    eprintln!("int8 worst cosine to reference: {worst:.6}");
    assert!(worst >= 0.998, "int8 worst cosine {worst}");
}

#[test]
fn layer_features_hold_every_layer_and_give_the_base_vector_back() {
    use helpdesk::inference::encoder::{base_of_layers, layer_features};
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let refs = reference();
    let texts: Vec<&str> = refs.iter().take(12).map(|r| r.text.as_str()).collect();
    let plain = enc.embed(&texts, true, true).unwrap();
    let layers = enc.embed_layers(&texts).unwrap();
    let (h, n) = (enc.dims(), enc.model().num_layers());
    for (i, means) in layers.iter().enumerate() {
        assert_eq!(means.len(), n * h, "one block per layer");
        let f = layer_features(means, h);
        assert_eq!(f.len(), h * n);
        assert!((norm(&f) - 1.0).abs() < 1e-5, "unit length: {}", norm(&f));
        // Every layer's block is there, at 1/sqrt(layers) of unit length.
        for b in f.chunks(h) {
            assert!((norm(b) - 1.0 / (n as f64).sqrt()).abs() < 1e-5);
        }
        // The blocks differ: they are different depths, not copies.
        assert!(cosine(&f[..h], &f[(n - 1) * h..]) < 0.99);
        let base = base_of_layers(&f, h);
        assert!(
            cosine(&base, &plain[i]) > 0.999_999,
            "text {i}: {}",
            cosine(&base, &plain[i])
        );
        assert!((cosine(&base, &refs[i].embedding) - 1.0).abs() < 1e-4);
    }
}
