//! The metrics' networks loaded from the official files: [`lpips_files`] and
//! [`clip_iqa_files`] name them, and with
//! the `download` feature [`scorer`] finds or downloads what the chosen metrics need through
//! the hub and builds a [`Scorer`].

#[cfg(feature = "download")]
use burn::tensor::Device;
#[cfg(feature = "download")]
use diffbir_core::Checkpoint;
#[cfg(feature = "download")]
use diffbir_ldm::clip::ClipTokenizer;
use diffbir_metrics::LpipsNet;
#[cfg(feature = "download")]
use diffbir_metrics::clip_iqa::ClipIqa;
#[cfg(feature = "download")]
use diffbir_metrics::{FrOptions, Lpips, Metric, Scorer};

#[cfg(feature = "download")]
use crate::error::Result;
#[cfg(feature = "download")]
use crate::hub::{DownloadObserver, Hub};
use crate::hub::{ModelFile, find_file};

/// The registry's files of an LPIPS network: torchvision's trunk and the `lpips` heads.
pub fn lpips_files(net: LpipsNet) -> [&'static ModelFile; 2] {
    let (trunk, heads) = match net {
        LpipsNet::Alex => ("alexnet", "lpips-alex"),
        LpipsNet::Vgg => ("vgg16", "lpips-vgg"),
    };
    // Names of this build's own registry (tested below), not of the caller's input.
    [trunk, heads].map(|name| find_file(name).expect("the registry lists the LPIPS files"))
}

#[cfg(feature = "download")]
/// Loads an LPIPS network from its official files (found in the hub's weights folders or
/// cache, downloaded otherwise). The tap widths are read from the heads file, so smaller
/// networks saved in the same layouts load as well.
pub fn load_lpips(
    hub: &Hub,
    net: LpipsNet,
    observer: &mut impl DownloadObserver,
    device: &Device,
) -> Result<Lpips> {
    let [trunk, heads] = lpips_files(net);
    let trunk = Checkpoint::open(hub.fetch_file(trunk, observer)?)?;
    let heads = Checkpoint::open(hub.fetch_file(heads, observer)?)?;
    Ok(Lpips::from_checkpoints(net, &trunk, &heads, device)?)
}

/// The registry's files of CLIP-IQA: OpenAI's CLIP RN50 and CLIP's BPE merges.
pub fn clip_iqa_files() -> [&'static ModelFile; 2] {
    // Names of this build's own registry (tested below), not of the caller's input.
    ["clip-rn50", "clip-bpe"]
        .map(|name| find_file(name).expect("the registry lists CLIP-IQA's files"))
}

#[cfg(feature = "download")]
/// Loads CLIP-IQA from its official files (found in the hub's weights folders or cache,
/// downloaded otherwise).
pub fn load_clip_iqa(
    hub: &Hub,
    observer: &mut impl DownloadObserver,
    device: &Device,
) -> Result<ClipIqa> {
    let [model, bpe] = clip_iqa_files();
    let checkpoint = Checkpoint::open(hub.fetch_file(model, observer)?)?;
    let tokenizer = ClipTokenizer::from_file(hub.fetch_file(bpe, observer)?)?;
    Ok(ClipIqa::load(&checkpoint, &tokenizer, device)?)
}

#[cfg(feature = "download")]
/// A scorer of `metrics` with the networks they need loaded through `hub`.
pub fn scorer(
    metrics: &[Metric],
    options: FrOptions,
    hub: &Hub,
    observer: &mut impl DownloadObserver,
    device: &Device,
) -> Result<Scorer> {
    let mut scorer = Scorer::new(metrics, options, device);
    for net in scorer.missing_networks() {
        let model = load_lpips(hub, net, observer, device)?;
        scorer = scorer.with_lpips(net, model);
    }
    if scorer.needs_clip_iqa() {
        let model = load_clip_iqa(hub, observer, device)?;
        scorer = scorer.with_clip_iqa(model);
    }
    Ok(scorer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lpips_network_has_its_files() {
        for net in LpipsNet::ALL {
            let [trunk, heads] = lpips_files(net);
            assert!(
                trunk.file_name.ends_with(".pth") && heads.file_name.starts_with("LPIPS_v0.1_")
            );
        }
    }
}
