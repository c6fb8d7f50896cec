//! The tuned-branch path: a copy of the top layer run through the packed
//! kernels from the split pass must reproduce the base encoder exactly when
//! its weights are the base ones, and tuning must move the weights.

use helpdesk::inference::bert::TopLayers;
use helpdesk::inference::{load_text_encoder, DeviceKind};
use helpdesk::ml::tune::{tune_top_layer, TuneConfig};

use crate::helpers::{cosine, models_dir, reference, require_model, MODEL};

#[test]
fn an_untuned_branch_reproduces_the_base_vectors_in_the_same_pass() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let model = enc.model();
    let top = TopLayers::from_weights(
        &[model.layer_weights(model.num_layers() - 1).unwrap()],
        model.heads(),
    )
    .unwrap();
    let refs = reference();
    let texts: Vec<&str> = refs.iter().take(16).map(|r| r.text.as_str()).collect();
    let (base, branch) = enc.embed_branched(&texts, &top).unwrap();
    let plain = enc.embed(&texts, true, true).unwrap();
    for i in 0..texts.len() {
        assert!(
            cosine(&base[i], &plain[i]) > 0.999_999,
            "base vector {i} changed"
        );
        assert!(
            cosine(&branch[i], &plain[i]) > 0.999_99,
            "branch {i}: {}",
            cosine(&branch[i], &plain[i])
        );
    }
    let (b2, mids) = enc.embed_with_mid(&texts, 1).unwrap();
    assert_eq!(b2.len(), texts.len());
    assert_eq!(mids[0].len() % 384, 0);
}

#[test]
fn tuning_the_top_layer_moves_its_weights_and_reports_validation() {
    require_model();
    let enc = load_text_encoder(MODEL, &models_dir(), DeviceKind::Cpu, false).unwrap();
    let model = enc.model();
    let texts = [
        "my card has not arrived",
        "when will my card come",
        "card still not delivered",
        "where is my new card",
        "I was charged twice",
        "double charge on my account",
        "payment taken two times",
        "duplicate transaction",
        "how do I top up",
        "add money to my account",
        "top up with bank transfer",
        "top-up failed",
    ];
    let targets: Vec<usize> = (0..12).map(|i| i / 4).collect();
    let (_, mids) = enc.embed_with_mid(&texts, 1).unwrap();
    let layer = model.layer_weights(model.num_layers() - 1).unwrap();
    let cfg = TuneConfig {
        max_epochs: 3,
        batch_size: 4,
        patience: 5,
        lr_layer: 1e-3,
        ..Default::default()
    };
    let (tuned, report) = tune_top_layer(
        &layer,
        model.heads(),
        model.layer_norm_eps(),
        &mids,
        &targets,
        3,
        &cfg,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(report.epochs, 3);
    assert!(
        report.val_loss.is_finite() && report.val_loss <= report.val_loss_before,
        "{report:?}"
    );
    let moved = tuned.iter().zip(&layer).any(|((_, a), (_, b))| {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 1e-4
    });
    assert!(
        report.best_epoch > 0 && moved,
        "tuning did not improve validation: {report:?}"
    );
}
