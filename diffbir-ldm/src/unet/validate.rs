//! What a UNet configuration may be: the checks [`UnetConfig::init`] relies on, and the exact
//! parameter count that bounds a configuration from users before anything is allocated.

use diffbir_core::weights::ParamCount;
use diffbir_core::{Error, Result};

use super::{PerLevel, UnetConfig};

impl UnetConfig {
    /// Checks the configuration; building requires it to hold.
    pub fn validate(&self) -> Result<()> {
        self.validate_with_hint(0)
    }

    /// [`validate`](Self::validate) for a network whose first conv also takes
    /// `hint_channels` inputs (the IRControlNet's copy of the encoder).
    pub fn validate_with_hint(&self, hint_channels: usize) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                what: "UNet config".into(),
                reason,
            })
        };
        if !self.use_spatial_transformer || self.context_dim.is_none() {
            return bad("only spatial-transformer UNets with a context_dim are supported (as in every SD 2.x model)".into());
        }
        if self.num_classes.is_some() {
            return bad("class-conditional UNets are not supported".into());
        }
        if self.num_heads == -1 && self.num_head_channels == -1 {
            return bad("either num_heads or num_head_channels has to be set".into());
        }
        let levels = self.channel_mult.len();
        if levels == 0 {
            return bad("channel_mult is empty".into());
        }
        // Each level halves the latent; 16 levels are more than any latent has.
        if levels > Self::MAX_LEVELS {
            return bad(format!(
                "channel_mult has {levels} levels, more than {}",
                Self::MAX_LEVELS
            ));
        }
        // The output conv takes `model_channels` inputs, the width of the first level.
        if self.channel_mult[0] != 1 {
            return bad(format!(
                "channel_mult must start with 1 (the output conv takes model_channels inputs), not {}",
                self.channel_mult[0]
            ));
        }
        if let PerLevel::Each(v) = &self.num_res_blocks
            && v.len() != levels
        {
            return bad(format!(
                "num_res_blocks {v:?} must have one entry per level ({levels})"
            ));
        }
        if let Some(n) = (0..levels)
            .map(|l| self.num_res_blocks.get(l))
            .find(|n| *n > Self::MAX_RES_BLOCKS)
        {
            return bad(format!(
                "{n} residual blocks in a level, more than {}",
                Self::MAX_RES_BLOCKS
            ));
        }
        if self
            .disable_self_attentions
            .as_ref()
            .is_some_and(|v| v.len() != levels)
        {
            return bad("disable_self_attentions needs one entry per level".into());
        }
        if let Some(n) = &self.num_attention_blocks
            && (n.len() != levels
                || n.iter()
                    .enumerate()
                    .any(|(l, b)| *b > self.num_res_blocks.get(l)))
        {
            return bad(format!(
                "num_attention_blocks {n:?} must have one entry per level, each at most that level's blocks"
            ));
        }
        for &mult in &self.channel_mult {
            let ch = mult
                .checked_mul(self.model_channels)
                .filter(|ch| *ch <= Self::MAX_WIDTH)
                .ok_or_else(|| Error::InvalidArgument {
                    what: "UNet config".into(),
                    reason: format!(
                        "level width {} × {mult} is more than {} channels",
                        self.model_channels,
                        Self::MAX_WIDTH
                    ),
                })?;
            if ch % 32 != 0 {
                return bad(format!(
                    "every level width must be a multiple of 32 (GroupNorm(32)); got {ch}"
                ));
            }
            let (heads, head_dim) = self.heads(ch);
            if heads == 0 || head_dim == 0 || heads * head_dim != ch {
                return bad(format!(
                    "width {ch} does not split into heads with this head configuration"
                ));
            }
        }
        self.param_count(hint_channels).check("UNet config")
    }

    /// At most this many levels (`channel_mult` entries).
    pub const MAX_LEVELS: usize = 16;
    /// At most this many residual blocks per level.
    pub const MAX_RES_BLOCKS: usize = 64;
    /// At most this many channels in a level.
    pub const MAX_WIDTH: usize = 1 << 20;

    /// The parameters [`init`](Self::init) creates, plus the IRControlNet's zero convs and
    /// `hint_channels` more inputs of the first conv (so that it bounds both networks built
    /// from this config), saturating. Loops over levels
    /// and blocks: [`validate`](Self::validate) bounds their numbers before calling it.
    pub(super) fn param_count(&self, hint_channels: usize) -> ParamCount {
        let mc = self.model_channels;
        let emb = mc.saturating_mul(4);
        let norm = |c: usize| ParamCount::of(&[2, c]);
        let res = |cin: usize, cout: usize| {
            let emb_out = if self.use_scale_shift_norm {
                cout.saturating_mul(2)
            } else {
                cout
            };
            let skip = if cin == cout {
                ParamCount::default()
            } else {
                ParamCount::layer(&[cout, cin, 1, 1], true)
            };
            norm(cin)
                + ParamCount::layer(&[cout, cin, 3, 3], true)
                + ParamCount::layer(&[emb_out, emb], true)
                + norm(cout)
                + ParamCount::layer(&[cout, cout, 3, 3], true)
                + skip
        };
        let transformer = |ch: usize, disable_self_attn: bool| {
            let (heads, head_dim) = self.heads(ch);
            let inner = heads.saturating_mul(head_dim);
            let ctx = self.context_dim.unwrap_or(inner);
            let attn = |kv: usize| {
                ParamCount::of(&[inner, inner])
                    + ParamCount::of(&[2, inner, kv])
                    + ParamCount::layer(&[inner, inner], true)
            };
            let block = attn(if disable_self_attn { ctx } else { inner })
                + ParamCount::layer(&[inner.saturating_mul(8), inner], true)
                + ParamCount::layer(&[inner, inner.saturating_mul(4)], true)
                + attn(ctx)
                + ParamCount::of(&[6, inner]);
            let proj_out = if self.use_linear_in_transformer {
                ParamCount::layer(&[inner, ch], true)
            } else {
                ParamCount::layer(&[ch, inner], true)
            };
            norm(ch)
                + ParamCount::layer(&[inner, ch], true)
                + block.times(self.transformer_depth)
                + proj_out
        };
        let resample = |ch: usize| {
            if self.resblock_updown {
                res(ch, ch)
            } else if self.conv_resample {
                ParamCount::layer(&[ch, ch, 3, 3], true)
            } else {
                ParamCount::default()
            }
        };
        let zero_conv = |c: usize| ParamCount::layer(&[c, c, 1, 1], true);
        let levels = self.channel_mult.len();
        let width = |level: usize| self.channel_mult[level].saturating_mul(mc);
        let cin = self.in_channels.saturating_add(hint_channels);
        let mut count = ParamCount::layer(&[emb, mc], true)
            + ParamCount::layer(&[emb, emb], true)
            + ParamCount::layer(&[mc, cin, 3, 3], true);
        let mut chans = vec![mc];
        let (mut ch, mut ds) = (mc, 1usize);
        for level in 0..levels {
            for block in 0..self.num_res_blocks.get(level) {
                count += res(ch, width(level));
                ch = width(level);
                if self.attention_resolutions.contains(&ds) && self.attends(level, block) {
                    count += transformer(ch, self.self_attn_disabled(level));
                }
                chans.push(ch);
            }
            if level != levels - 1 {
                count += resample(ch);
                chans.push(ch);
                ds = ds.saturating_mul(2);
            }
        }
        count += chans.iter().map(|c| zero_conv(*c)).sum::<ParamCount>();
        count += res(ch, ch).times(2) + transformer(ch, self.disable_middle_self_attn);
        count += zero_conv(ch);
        for level in (0..levels).rev() {
            let n = self.num_res_blocks.get(level);
            for block in 0..=n {
                let skip = chans.pop().unwrap_or(0);
                count += res(ch.saturating_add(skip), width(level));
                ch = width(level);
                if self.attention_resolutions.contains(&ds) && self.attends(level, block) {
                    count += transformer(ch, self.self_attn_disabled(level));
                }
                if level > 0 && block == n {
                    count += resample(ch);
                    ds /= 2;
                }
            }
        }
        count + norm(ch) + ParamCount::layer(&[self.out_channels, mc, 3, 3], true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::Device;

    #[test]
    fn validate_counts_the_parameters_init_creates() {
        // The count includes the IRControlNet's zero convs and hint inputs, so that it bounds
        // both networks.
        let zero_convs = |c: &UnetConfig| {
            let (_, chans) = c.input_blocks(0, &Device::flex());
            let mid = c.model_channels * c.channel_mult.last().unwrap();
            chans
                .iter()
                .chain([&mid])
                .map(|c| (c * c + c) as u128)
                .sum::<u128>()
        };
        let device = Device::flex();
        for config in [
            UnetConfig::tiny(),
            UnetConfig::tiny()
                .with_use_scale_shift_norm(true)
                .with_resblock_updown(true)
                .with_use_linear_in_transformer(false)
                .with_transformer_depth(2),
            UnetConfig::tiny()
                .with_num_res_blocks(PerLevel::Each(vec![2, 1]))
                .with_num_attention_blocks(Some(vec![1, 0]))
                .with_disable_self_attentions(Some(vec![true, false]))
                .with_attention_resolutions(vec![1, 2])
                .with_conv_resample(false),
        ] {
            config.validate().unwrap();
            let built = config.init(&device).num_params() as u128;
            for hint in [0, 4] {
                let hint_weights = (hint * config.model_channels * 9) as u128;
                assert_eq!(
                    config.param_count(hint).0,
                    built + zero_convs(&config) + hint_weights,
                    "{config:?}, {hint} hint channels"
                );
            }
        }
        for config in [
            UnetConfig::sd21().with_model_channels(1 << 40),
            UnetConfig::sd21().with_channel_mult(vec![1; 70]),
            UnetConfig::sd21().with_channel_mult(vec![2, 2, 4, 4]),
            UnetConfig::sd21().with_num_res_blocks(PerLevel::All(1 << 20)),
            UnetConfig::sd21().with_transformer_depth(usize::MAX),
            UnetConfig::sd21().with_context_dim(Some(usize::MAX)),
        ] {
            let err = config.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        }
        let err = UnetConfig::sd21()
            .validate_with_hint(usize::MAX)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }
}
