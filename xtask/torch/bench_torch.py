#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench --compare-torch`.

Times one component of DiffBIR at its official size, with random weights, and prints one JSON
line in the format of `cargo xtask bench --json`:

    {"name", "device", "dtype", "batch", "min_s", "median_s", "peak_rss_mib",
     "framework": "pytorch", "threads", "runs", "source": "measured"}

The stage-2 components are built from diffusers / transformers classes with the configurations
DiffBIR uses; the stage-1 networks, which those libraries lack, from stage1_models.py beside
this script (PyTorch definitions following the original DiffBIR code at a pinned commit).
`--list` prints the components it times and the library versions instead.

`--precision bf16` runs the forward passes under `torch.autocast("cpu", dtype=torch.bfloat16)`
(training components: the forward and the loss; the backward and the update outside, as usual)
and records `"dtype": "bf16"`; the default, f32, runs plain float32 and records `"f32"`.

Equivalences (docs/benchmarks.md has the details):
- swinir: stage1_models.SwinIR with configs/inference/swinir.yaml (8 groups of 6 blocks, width
  180, window 8, PixelUnshuffle x8 stem, "nearest+conv" x8 head) on a 512x512 image.
- bsrnet: stage1_models.RRDBNet with configs/inference/bsrnet.yaml (23 RRDBs, width 64,
  growth 32, x4): 128x128 -> 512x512.
- scunet: stage1_models.SCUNet with configs/inference/scunet.yaml (4 blocks per stage, width
  64; SCUNet-PSNR) on a 512x512 image.
- unet: diffusers UNet2DConditionModel with the Stable Diffusion 2.1 config.
- controlnet: diffusers ControlNetModel with the SD 2.1 encoder config. DiffBIR's IRControlNet
  concatenates the 4-channel condition latent to x_t before its first conv (8 input channels);
  diffusers adds a conditioning embedding to the output of a 4-channel first conv instead. The
  embedding is reduced to two 3x3 convs at latent size (4 -> 16 -> 320 channels,
  `conditioning_embedding_out_channels=(16,)`), under 0.2 % of the ControlNet's FLOPs.
- controlldm-step: that ControlNet, then the UNet with its 13 residuals added.
- vae-encode / vae-decode: diffusers AutoencoderKL with the SD config (encode: posterior mode).
- vae-decode-tiled: the same VAE with diffusers' own tiling (tiles of 32 latents = 256 px,
  overlap 1/4, blended). DiffBIR's tiled VAE (tiles of 32 latents plus an 11-latent margin,
  GroupNorm statistics shared across tiles) decodes more pixels per image; the ratio compares
  the two implementations of the same job, not the same arithmetic.
- text-encoder: transformers CLIPTextModel with the OpenCLIP ViT-H/14 text tower shape (width
  1024, 16 heads, MLP 4096, GELU, 77 positions), 23 layers: DiffBIR takes the penultimate
  layer's output, so the 24th block never runs.
"""

import argparse
import json
import os
import statistics
import sys
import time

# stage1_models.py is imported from this folder: leave no __pycache__ in the source tree.
sys.dont_write_bytecode = True

COMPONENTS = {
    "swinir": (1,),
    "bsrnet": (1,),
    "scunet": (1,),
    "text-encoder": (2,),
    "vae-encode": (1,),
    "vae-decode": (1,),
    "vae-decode-tiled": (1,),
    "unet": (1, 2),
    "controlnet": (1, 2),
    "controlldm-step": (1, 2),
    "train-stage2-step": (1,),
}

# Components that train (timed with autograd on; the others run under inference_mode).
TRAINING = {"train-stage2-step"}

# The stage-1 networks (stage1_models.py).
STAGE1 = {"swinir", "bsrnet", "scunet"}

# `--precision` -> the `dtype` of the JSON record (the names `cargo xtask bench` records use).
PRECISIONS = {"f32": "f32", "bf16": "bf16"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print the components and versions")
    p.add_argument("--component", choices=sorted(COMPONENTS))
    p.add_argument("--batch", type=int)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--tiny", action="store_true", help="tiny configs (plumbing checks)")
    p.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="f32",
        help="f32, or bf16 autocast of the forward passes",
    )
    return p.parse_args()


def vm_hwm_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return -(-int(line.split()[1]) // 1024)
    except OSError:
        pass
    return None


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# --- configurations -------------------------------------------------------------------------

def sd21_unet_kwargs(tiny):
    if tiny:
        return dict(
            in_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            block_out_channels=(32, 32),
            layers_per_block=1,
            attention_head_dim=(2, 2),
            cross_attention_dim=8,
            use_linear_projection=True,
        )
    # stabilityai/stable-diffusion-2-1, unet/config.json (attention_head_dim is the number of
    # heads in diffusers' naming: 64 channels per head).
    return dict(
        in_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        upcast_attention=True,
        flip_sin_to_cos=True,
        freq_shift=0,
        norm_num_groups=32,
        norm_eps=1e-5,
        act_fn="silu",
    )


def build_unet(tiny):
    from diffusers import UNet2DConditionModel

    kw = sd21_unet_kwargs(tiny)
    n = len(kw["down_block_types"])
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    return UNet2DConditionModel(sample_size=16 if tiny else 96, out_channels=4, up_block_types=up, **kw)


def build_controlnet(tiny):
    from diffusers import ControlNetModel

    return ControlNetModel(
        conditioning_channels=4,
        conditioning_embedding_out_channels=(16,),
        **sd21_unet_kwargs(tiny),
    )


def build_vae(tiny):
    from diffusers import AutoencoderKL

    ch = (32, 32, 32, 32) if tiny else (128, 256, 512, 512)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=ch,
        layers_per_block=1 if tiny else 2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=768,
    )


def build_stage1(name, tiny):
    """A stage-1 network and the side of its (square) input image: the official configuration,
    or the tiny one of the Rust side (`SwinIrConfig::tiny`, `RrdbNetConfig::tiny`,
    `ScuNetConfig::tiny`) on the same input sizes as `cargo xtask bench --tiny`."""
    import stage1_models as s1

    if name == "swinir":
        kw = dict(s1.SWINIR_DIFFBIR)
        if tiny:
            kw.update(img_size=16, embed_dim=24, depths=[2, 2], num_heads=[2, 3])
        return s1.SwinIR(**kw), 64 if tiny else 512
    if name == "bsrnet":
        kw = dict(s1.BSRNET)
        if tiny:
            kw.update(nf=16, nb=1, gc=8)
        return s1.RRDBNet(**kw), 16 if tiny else 128
    kw = dict(s1.SCUNET_PSNR)
    if tiny:
        kw.update(config=[2, 1, 1, 1, 1, 1, 2], dim=8, head_dim=4)
    return s1.SCUNet(**kw), 64 if tiny else 512


def build_text_encoder(tiny):
    from transformers import CLIPTextConfig, CLIPTextModel

    width, heads, layers = (8, 2, 2) if tiny else (1024, 16, 23)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=width,
    )
    return CLIPTextModel(config)


# --- components -----------------------------------------------------------------------------

def prepare(name, batch, tiny, autocast):
    """Builds the model and inputs of a component; returns the function to time. `autocast()`
    gives the precision context: training components enter it for their forward pass, `main`
    wraps the others' whole call in it."""
    import torch

    latent_side, ctx_dim = (16, 8) if tiny else (64, 1024)

    def stage2_inputs():
        x = torch.randn(batch, 4, latent_side, latent_side)
        hint = torch.randn(batch, 4, latent_side, latent_side)
        t = torch.full((batch,), 500, dtype=torch.long)
        ctx = torch.randn(batch, 77, ctx_dim)
        return x, hint, t, ctx

    if name in STAGE1:
        model, side = build_stage1(name, tiny)
        model.eval()
        # Images in [0, 1), as the Rust side's.
        x = torch.rand(batch, 3, side, side)
        return lambda: model(x)
    if name == "text-encoder":
        model = build_text_encoder(tiny).eval()
        ids = (torch.arange(batch * 77) * 37 % 49000).reshape(batch, 77)
        return lambda: model(input_ids=ids).last_hidden_state
    if name in ("vae-encode", "vae-decode", "vae-decode-tiled"):
        vae = build_vae(tiny).eval()
        if name == "vae-encode":
            side = 64 if tiny else 512
            x = torch.rand(batch, 3, side, side) * 2 - 1
            return lambda: vae.encode(x).latent_dist.mode()
        if name == "vae-decode":
            side = 8 if tiny else 64
            z = torch.randn(batch, 4, side, side)
            return lambda: vae.decode(z).sample
        side, tile = (32, 8) if tiny else (256, 32)
        vae.tile_latent_min_size = tile
        vae.tile_sample_min_size = 8 * tile
        vae.enable_tiling()
        z = torch.randn(batch, 4, side, side)
        return lambda: vae.decode(z).sample
    if name == "unet":
        unet = build_unet(tiny).eval()
        x, _, t, ctx = stage2_inputs()
        return lambda: unet(x, t, encoder_hidden_states=ctx).sample
    if name == "controlnet":
        controlnet = build_controlnet(tiny).eval()
        x, hint, t, ctx = stage2_inputs()

        def run():
            down, mid = controlnet(
                x, t, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False
            )
            return (*down, mid)

        return run
    if name == "controlldm-step":
        unet = build_unet(tiny).eval()
        controlnet = build_controlnet(tiny).eval()
        x, hint, t, ctx = stage2_inputs()

        def run():
            down, mid = controlnet(
                x, t, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False
            )
            return unet(
                x,
                t,
                encoder_hidden_states=ctx,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample

        return run
    if name == "train-stage2-step":
        # DiffBIR's train_stage2.py without gradient checkpointing: the ControlNet trained,
        # the UNet frozen, AdamW with PyTorch's defaults (weight decay 0.01).
        unet = build_unet(tiny).train().requires_grad_(False)
        controlnet = build_controlnet(tiny).train()
        opt = torch.optim.AdamW(controlnet.parameters(), lr=1e-5)
        x, hint, t, ctx = stage2_inputs()
        target = torch.randn_like(x)

        def run():
            opt.zero_grad(set_to_none=True)
            with autocast():
                down, mid = controlnet(
                    x, t, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False
                )
                pred = unet(
                    x,
                    t,
                    encoder_hidden_states=ctx,
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid,
                ).sample
                loss = torch.nn.functional.mse_loss(pred, target)
            loss.backward()
            opt.step()
            return loss.detach()

        return run
    raise SystemExit(f"unknown component {name}")


def all_finite(out):
    import torch

    outs = out if isinstance(out, tuple) else (out,)
    return all(bool(torch.isfinite(o).all()) for o in outs)


def main():
    args = parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch

    if args.list:
        import diffusers
        import stage1_models
        import transformers

        print(
            json.dumps(
                {
                    "components": list(COMPONENTS),
                    "versions": {
                        "torch": torch.__version__,
                        "diffusers": diffusers.__version__,
                        "transformers": transformers.__version__,
                        # The DiffBIR commit stage1_models.py follows.
                        "diffbir": stage1_models.DIFFBIR_COMMIT,
                    },
                }
            )
        )
        return
    if args.component is None:
        raise SystemExit("--component or --list is required")
    batch = args.batch or COMPONENTS[args.component][0]
    if batch not in COMPONENTS[args.component]:
        raise SystemExit(f"{args.component} is timed at batch {COMPONENTS[args.component]}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import contextlib
    import gc

    def autocast():
        if args.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    training = args.component in TRAINING
    mode = contextlib.nullcontext() if training else torch.inference_mode()
    with mode:
        run = prepare(args.component, batch, args.tiny, autocast)
        if not training:
            forward = run

            def run():
                with autocast():
                    return forward()

        for _ in range(args.warmup):
            out = run()
        gc.collect()
        reset_hwm()
        times = []
        for _ in range(max(1, args.runs)):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
        if not all_finite(out):
            print(f"warning: {args.component} gave non-finite values", file=sys.stderr)
    record = {
        "name": args.component,
        "device": "cpu",
        "dtype": PRECISIONS[args.precision],
        "batch": batch,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "peak_rss_mib": vm_hwm_mib(),
        "framework": "pytorch",
        "threads": torch.get_num_threads(),
        "runs": len(times),
        "source": "measured",
    }
    if args.tiny:
        record["tiny"] = True
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
