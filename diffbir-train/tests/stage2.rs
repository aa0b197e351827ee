//! Stage-2 training on the tiny config (the fixtures' tiny SD and SwinIR, crops of the real
//! photos): the ControlNet starts from the UNet, its diffusion loss on a fixed batch drops
//! after a short run (v-prediction with noise augmentation, and eps), and the exported
//! weights load strictly under the official ControlNet key names.

use std::path::Path;

use burn::tensor::Device;
use diffbir_controlnet::{CONTROLNET_KEYS, ControlLdm};
use diffbir_core::{Checkpoint, load_into};
use diffbir_sampler::Parameterization;
use diffbir_train::RunOptions;
use diffbir_train::config::{Stage2TrainConfig, load_config};
use diffbir_train::data::{CodeformerDataset, make_batch};
use diffbir_train::stage2::{Frozen, batch_loss, train_stage2};
use diffbir_train::state::read_safetensors;

fn tiny() -> Stage2TrainConfig {
    load_config(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny-stage2.toml"))
        .expect("the shipped tiny config loads")
}

fn run_and_compare(mut config: Stage2TrainConfig, steps: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    config.train.image_every = steps;
    config.train.sample_steps = 2;
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        steps: Some(steps),
        resume: false,
    };
    let summary = train_stage2(&config, &options, &mut |_| {}).unwrap();
    assert_eq!(summary.losses.len() as u64, steps);
    assert!(summary.losses.iter().all(|l| l.is_finite()));
    assert!(dir.path().join(format!("images/{steps:07}.png")).exists());

    // The same batch and draws, scored with the initial and the trained ControlNet.
    let device = Device::flex();
    let parts = Frozen::load(&config, &device).unwrap();
    let data = CodeformerDataset::new(
        config.dataset.train.as_ref().unwrap(),
        config.train.p_empty_prompt,
    )
    .unwrap();
    let batch = make_batch(&data, config.train.batch_size, 7, 1000, 1).unwrap();
    let mut initial = config.model.controlnet.init(&device).unwrap();
    initial.init_from_unet(&parts.unet).unwrap();
    let mut trained = config.model.controlnet.init(&device).unwrap();
    load_into(
        &mut trained,
        &Checkpoint::open(&summary.weights).unwrap(),
        &CONTROLNET_KEYS,
    )
    .expect("the exported ControlNet has the official key names");
    let aug = config.train.noise_aug_timestep;
    let score = |cn| {
        let cldm = ControlLdm {
            unet: parts.unet.clone(),
            controlnet: cn,
        };
        (0..4)
            .map(|k| batch_loss(&parts, &cldm, &batch, 7, k, aug))
            .sum::<f64>()
            / 4.0
    };
    (score(initial), score(trained))
}

#[test]
fn v_prediction_loss_decreases() {
    let mut config = tiny();
    config.train.learning_rate = 1e-3;
    let (before, after) = run_and_compare(config, 12);
    println!("v: fixed-batch loss {before} -> {after}");
    assert!(after < before, "{before} -> {after}");
}

#[test]
fn eps_prediction_loss_decreases() {
    let mut config = tiny();
    config.model.diffusion.parameterization = Parameterization::Eps;
    config.model.diffusion.zero_snr = false;
    config.train.noise_aug_timestep = 0;
    config.train.learning_rate = 1e-3;
    let (before, after) = run_and_compare(config, 12);
    println!("eps: fixed-batch loss {before} -> {after}");
    assert!(after < before, "{before} -> {after}");
}

/// Losses and final ControlNet weights of a 2-step run on `device`.
fn two_steps(device: &str) -> (Vec<f64>, Vec<(String, Vec<f32>)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny();
    config.train.device = device.into();
    config.train.image_every = 2;
    config.train.sample_steps = 2;
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        steps: Some(2),
        resume: false,
    };
    let summary = train_stage2(&config, &options, &mut |_| {}).unwrap();
    assert!(dir.path().join("images/0000002.png").exists());
    let (tensors, _) = read_safetensors(&summary.weights).unwrap();
    let weights = tensors
        .into_iter()
        .map(|(n, d)| (n, d.convert::<f32>().try_to_vec::<f32>().unwrap()))
        .collect();
    (summary.losses, weights)
}

/// Two replicas on the CPU device, each with half of the global batch (its samples' own
/// timesteps and noise) and the loss weighted by its share, take the step one device takes.
#[test]
fn two_replicas_match_one_device() {
    let (l1, w1) = two_steps("cpu");
    let (l2, w2) = two_steps("cpu,cpu");
    let dl = l1
        .iter()
        .zip(&l2)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0.0, f64::max);
    let (mut abs, mut rel) = (0.0f64, 0.0f64);
    for ((na, a), (nb, b)) in w1.iter().zip(&w2) {
        assert_eq!(na, nb);
        let scale = a.iter().fold(1e-12f64, |m, v| m.max(v.abs() as f64));
        for (x, y) in a.iter().zip(b) {
            let d = (*x as f64 - *y as f64).abs();
            abs = abs.max(d);
            rel = rel.max(d / scale);
        }
    }
    println!(
        "1 vs 2 replicas: weights max |Δ| {abs:.3e} ({rel:.3e} of the tensor's scale), losses {dl:.3e}"
    );
    // Within 1 % of one Adam update (the learning rate) per weight; the zero convolutions
    // start at 0, so a bound relative to the tensors' magnitude would mean little.
    let lr = tiny().train.learning_rate;
    assert!(abs < 0.01 * lr && dl < 1e-6, "{abs} {rel} {dl}");
}
