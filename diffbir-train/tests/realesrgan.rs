//! Training on v2.1's data (`tiny-stage2-realesrgan.toml`): the Real-ESRGAN dataset on crops
//! of the real photos, degraded on the training device by the second-order batch transform
//! with its training-pair pool. A stage-2 run resumed from a checkpoint (pool included)
//! ends with the same weights as an uninterrupted one, and stage 1 trains on the same data.

use std::path::Path;

use diffbir_train::RunOptions;
use diffbir_train::config::{Stage1TrainConfig, Stage2TrainConfig, load_config};
use diffbir_train::stage1::train_stage1;
use diffbir_train::stage2::train_stage2;
use diffbir_train::state::{load_state, read_safetensors, state_path};

fn configs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn tiny() -> Stage2TrainConfig {
    let mut config: Stage2TrainConfig = load_config(&configs().join("tiny-stage2-realesrgan.toml"))
        .expect("the shipped tiny Real-ESRGAN config loads");
    config.train.batch_size = 2;
    config.train.image_every = 0;
    config.train.ckpt_every = 2;
    config.batch_transform.as_mut().unwrap().queue_size = 2;
    config
}

fn run(config: &Stage2TrainConfig, out: &Path, steps: u64, resume: bool) -> Vec<f64> {
    let options = RunOptions {
        out: out.to_path_buf(),
        steps: Some(steps),
        resume,
    };
    train_stage2(config, &options, &mut |_| {}).unwrap().losses
}

#[test]
fn stage2_resumes_with_its_training_pool_on_the_same_trajectory() {
    let config = tiny();
    let straight = tempfile::tempdir().unwrap();
    let losses = run(&config, straight.path(), 4, false);
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");

    let resumed = tempfile::tempdir().unwrap();
    run(&config, resumed.path(), 2, false);
    // The checkpoint holds the full pool: 2 pairs of 96² images and their captions.
    let state = load_state(&state_path(&resumed.path().join("checkpoints"), 2)).unwrap();
    let shapes: Vec<_> = state
        .data
        .iter()
        .map(|(n, d)| (n.clone(), d.shape().to_vec()))
        .collect();
    assert_eq!(
        shapes,
        vec![
            ("pool0.gt".to_string(), vec![2, 3, 96, 96]),
            ("pool0.lq".to_string(), vec![2, 3, 96, 96]),
        ]
    );
    assert!(
        state.data_meta.contains("\"filled\":2"),
        "{}",
        state.data_meta
    );
    // A resume with settings that change the trajectory is refused.
    let mut changed = config.clone();
    changed.train.noise_aug_timestep = 100;
    let options = RunOptions {
        out: resumed.path().to_path_buf(),
        steps: Some(4),
        resume: true,
    };
    let err = train_stage2(&changed, &options, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.noise_aug_timestep"), "{err}");
    let tail = run(&config, resumed.path(), 4, true);
    assert_eq!(tail, losses[2..].to_vec());

    let (a, _) = read_safetensors(&straight.path().join("final.safetensors")).unwrap();
    let (b, _) = read_safetensors(&resumed.path().join("final.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for ((na, da), (nb, db)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(da.as_bytes(), db.as_bytes(), "{na} differs after resuming");
    }
}

#[test]
fn stage1_trains_on_the_real_esrgan_data() {
    let data = tiny();
    let mut config: Stage1TrainConfig =
        load_config(&configs().join("tiny-stage1.toml")).expect("the tiny stage-1 config loads");
    config.dataset.train = None;
    config.dataset.val = None;
    config.dataset.realesrgan = data.dataset.realesrgan;
    config.batch_transform = data.batch_transform;
    config.train.batch_size = 2;
    config.train.val_every = 0;
    config.train.image_every = 1;
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        steps: Some(3),
        resume: false,
    };
    let summary = train_stage1(&config, &options, &mut |_| {}).unwrap();
    assert_eq!(summary.losses.len(), 3);
    assert!(summary.losses.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(dir.path().join("images/0000001.png").exists());
    assert!(summary.weights.exists());
}

#[test]
fn the_reference_v21_config_parses_and_mismatched_sections_are_refused() {
    // The v2.1 config parses, then asks for the SD checkpoint it names.
    let err = load_config::<Stage2TrainConfig>(&configs().join("train_stage2_v2.1.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.sd_path"), "{err}");

    let text = std::fs::read_to_string(configs().join("tiny-stage2-realesrgan.toml")).unwrap();
    let base = configs();
    let write = |name: &str, body: String| {
        let path = base.join(format!("{name}.test-{}.toml", std::process::id()));
        std::fs::write(&path, body).unwrap();
        let result = load_config::<Stage2TrainConfig>(&path).map(|_| ());
        std::fs::remove_file(&path).unwrap();
        result.unwrap_err().to_string()
    };
    let cut = text.find("[batch_transform]").unwrap();
    let end = text.find("[train]").unwrap();
    let without = format!("{}{}", &text[..cut], &text[end..]);
    let err = write("no-transform", without);
    assert!(err.contains("[batch_transform]"), "{err}");
    let small = text.replace("out_size = 96", "out_size = 48");
    let err = write("small", small);
    assert!(err.contains("21×21"), "{err}");
}
