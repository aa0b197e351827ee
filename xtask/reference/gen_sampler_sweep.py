#!/usr/bin/env python3
"""Sampler reference sweep: runs the ORIGINAL DiffBIR samplers and writes parity cases.

What it produces
----------------
One `sampler_run` case per configuration (`NAME.json` + `NAME.io.safetensors`) and an
`index.json`, in the fixture format of the public golden set (see the fixtures README,
"Tensor name prefixes", "Recorded randomness"): `cargo xtask parity <dir>` consumes them
unchanged. The sweep covers all 14 samplers of DiffBIR v2.1

    spaced, ddim, dpm++_m2, edm_euler, edm_euler_a, edm_heun, edm_dpm_2, edm_dpm_2_a,
    edm_lms, edm_dpm++_2s_a, edm_dpm++_sde, edm_dpm++_2m, edm_dpm++_2m_sde, edm_dpm++_3m_sde

x both parameterizations (eps: SD v2 schedule, linear 0.00085-0.012, 1000 steps; v: the same
with zero terminal SNR, as DiffBIR v2.1) x steps 1..12 x {cfg on (scale 4.0), cfg off
(`_nocfg`: scale 1.0, which the original treats like `uncond=None`)}, plus, at every step
count and both parameterizations: eta 0.5 / 0.0 (`_eta0p5`, `_eta0`; the ancestral and SDE
samplers), churn (`_churn`, `_churn_window`; edm_euler, edm_heun, edm_dpm_2), LMS orders 2/3/4
(`_order2..4`), rescale_cfg (`_rescale_cfg`; every step count for spaced and dpm++_m2 -- the
latter with batch 1, since the original raises for batch > 1 --, steps 4 and 10 for the
others) and the `cond` start point
(`_cond_start`, steps 2 and 7). Configurations on which the original raises are written with
`expect_error: true` and the exception text in `expected_error`. Samplers are built as
`Pipeline.apply_cldm` builds them (DDIM always with eta = 0).

The model is the analytic stand-in of the public cases (`STANDIN_FORMULA`), so no network
weights are needed. Latents are [2, 4, 2, 3] (batch 2), text contexts [2, 3, 8]. Each case
has its own seed (crc32 of its name, `torch_seed`): the inputs come from numpy's generator with
that seed, and torch's global RNG is seeded with it right before the sampler call, as in the
public cases (whose draws this script reproduces bit for bit, see `--check-public`).

Every random tensor the original draws during the sampler call (torch.randn, randn_like,
rand, rand_like, randint, randint_like, normal, poisson) is stored as `noise.NNN` in draw
order; for the Brownian-tree SDE samplers the recorded unit is the value returned by
`BrownianTreeNoiseSampler(sigma, sigma_next)` (kind `brownian_tree`, `args`), not torchsde's
internal draws (those, and the tree's seed draw, run unrecorded).

Pinned reference
----------------
XPixelGroup/DiffBIR at commit REFERENCE_COMMIT (below). The original code is imported at run
time from the folder given with `--diffbir` (a checkout or an export of that commit); nothing
of it is copied here. Only the sampler modules are imported (plus
`diffbir.model.gaussian_diffusion` and `diffbir.utils.common`); `diffbir.model.cldm` (the
network stack) is replaced by a stub since the samplers only use it for type hints.

How to run
----------
    # a clone of XPixelGroup/DiffBIR (GitHub) at the pinned commit, e.g. in /tmp/diffbir-src
    git -C /tmp/diffbir-src checkout 3f8b5304245ba0ffd6f1995e51c27c3c72d7618f
    python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install -r xtask/reference/requirements.txt
    /tmp/venv-ref/bin/python xtask/reference/gen_sampler_sweep.py \
        --diffbir /tmp/diffbir-src --out testing/fixtures/samplers

Options: `--only SUBSTR` (generate only cases whose name contains SUBSTR; `index.json` is then
not rewritten), `--check-public DIR` (instead of generating, re-run the public `sampler_run`
cases of DIR that use the stand-in model with their `torch_seed` and inputs, and compare every
recorded tensor), `--list` (print the case names).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import types
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REFERENCE_COMMIT = "3f8b5304245ba0ffd6f1995e51c27c3c72d7618f"
REFERENCE_REPO = "XPixelGroup/DiffBIR"

STANDIN_FORMULA = (
    "out = 0.8*tanh(x)*(1 - 0.5*tt) + 0.3*c_img + 0.2*ctx + 0.1*tt, "
    "tt = float32(t)/1000 reshaped [B,1,1,1], ctx = mean(c_txt over dims 1,2) reshaped [B,1,1,1]"
)

SAMPLERS = [
    "spaced",
    "ddim",
    "dpm++_m2",
    "edm_euler",
    "edm_euler_a",
    "edm_heun",
    "edm_dpm_2",
    "edm_dpm_2_a",
    "edm_lms",
    "edm_dpm++_2s_a",
    "edm_dpm++_sde",
    "edm_dpm++_2m",
    "edm_dpm++_2m_sde",
    "edm_dpm++_3m_sde",
]
ETA_SAMPLERS = [
    "edm_euler_a",
    "edm_dpm_2_a",
    "edm_dpm++_2s_a",
    "edm_dpm++_sde",
    "edm_dpm++_2m_sde",
    "edm_dpm++_3m_sde",
]
CHURN_SAMPLERS = ["edm_euler", "edm_heun", "edm_dpm_2"]
BROWNIAN_SAMPLERS = ["edm_dpm++_sde", "edm_dpm++_2m_sde", "edm_dpm++_3m_sde"]

DIFFUSION_CONFIGS = {
    # SD v2 (DiffBIR v2): eps prediction.
    "eps": {"linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "parameterization": "eps"},
    # SD v2.1 (DiffBIR v2.1): v prediction with zero terminal SNR.
    "v": {
        "linear_start": 0.00085,
        "linear_end": 0.012,
        "timesteps": 1000,
        "zero_snr": True,
        "parameterization": "v",
    },
}

# The inference CLI's defaults (inference.py), used where a variant does not override them.
DEFAULT_OPTIONS = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 300.0, "s_noise": 1.0, "eta": 1.0, "order": 1}

LATENT_SHAPE = (2, 4, 2, 3)
TXT_SHAPE = (2, 3, 8)
CFG_ON = 4.0
CFG_OFF = 1.0
STEPS = list(range(1, 13))
RESCALE_STEPS = (4, 10)  # rescale_cfg for samplers other than spaced / dpm++_m2
COND_START_STEPS = (2, 7)

TOLERANCE = {
    "rtol": 0.0001,
    "atol": 0.0001,
    "comment": "float32; scale atol by max|tensor| for step.* tensors (EDM steps start at sigma_max * x_T)",
}
ERROR_TOLERANCE = {"comment": "the original raises; a port may raise or reject this configuration"}

CALL = (
    "sampler = <class>(diffusion.betas, parameterization, rescale_cfg, ...); "
    "z = sampler.sample(model, 'cpu', steps, x_T.shape, cond, uncond, cfg_scale, tiled, tile_size, tile_stride, x_T)"
)
INPUTS_DOC = {
    "input.x_T": "start latent",
    "input.cond.*": "conditional branch",
    "input.uncond.*": "unconditional branch",
}
OUTPUTS_DOC = {
    "output.z": "final latent",
    "step.NNN.x": "spaced/ddim: x after each p_sample; dpm++_m2: x after each multistep update; "
    "edm_*: x at the START of step i as passed to the k-diffusion callback",
    "step.NNN.denoised": "edm_*: denoised prediction (after cfg) of step i",
    "model_call.NNN.{x,t,out}": "every call of the stand-in model in order (only when record_model_calls)",
    "sched.*": "the schedule tensors the sampler registered",
}
BASE_NOTES = [
    "noise.NNN are all random tensors drawn by the sampler, in order (kinds in noise_draws). Draws that are "
    "never used still appear (e.g. edm_euler/heun/dpm_2 draw eps every step even when s_churn = 0; ddim draws "
    "randn_like although sigma = 0).",
    "brownian_tree draws (dpm++_sde, dpm++_2m_sde, dpm++_3m_sde) are the values returned by "
    "BrownianTreeNoiseSampler(sigma, sigma_next); args = [sigma, sigma_next].",
]

RNG_FUNCS = ["randn", "randn_like", "rand", "rand_like", "randint", "randint_like", "normal", "poisson"]
# Random functions and methods that must not run unrecorded during a sampler call.
GUARDED_TORCH = ["bernoulli", "multinomial", "randperm"]
GUARDED_TENSOR = ["normal_", "uniform_", "bernoulli_", "random_", "exponential_", "geometric_",
                  "cauchy_", "log_normal_"]


# --------------------------------------------------------------------------------------------
# Importing the original code
# --------------------------------------------------------------------------------------------


def import_original(root: Path):
    """Imports the original sampler modules from `root` (the DiffBIR repository root) without
    the network stack; returns a namespace with the needed modules."""
    pkg_dir = root / "diffbir"
    if not (pkg_dir / "sampler" / "k_diffusion.py").is_file():
        sys.exit(f"{root} does not look like a DiffBIR checkout (no diffbir/sampler/k_diffusion.py)")

    def package(name: str, path: Path) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        mod.__package__ = name
        sys.modules[name] = mod
        return mod

    package("diffbir", pkg_dir)  # skips nothing: diffbir/ has no __init__.py
    model_pkg = package("diffbir.model", pkg_dir / "model")  # skips model/__init__.py (network stack)
    package("diffbir.utils", pkg_dir / "utils")

    class ControlLDM(torch.nn.Module):  # stub: the samplers only use it in annotations
        pass

    cldm = types.ModuleType("diffbir.model.cldm")
    cldm.ControlLDM = ControlLDM
    sys.modules["diffbir.model.cldm"] = cldm
    model_pkg.cldm = cldm
    model_pkg.ControlLDM = ControlLDM

    # edm_sampler.py annotates `x_size: torch.Tuple[int]`; torch re-exported typing.Tuple until
    # recent releases (it is gone in torch 2.15), so restore the alias before importing it.
    if not hasattr(torch, "Tuple"):
        import typing

        torch.Tuple = typing.Tuple

    gd = importlib.import_module("diffbir.model.gaussian_diffusion")
    model_pkg.Diffusion = gd.Diffusion
    sampler_pkg = importlib.import_module("diffbir.sampler")
    ns = types.SimpleNamespace(
        Diffusion=gd.Diffusion,
        SpacedSampler=sampler_pkg.SpacedSampler,
        DDIMSampler=sampler_pkg.DDIMSampler,
        DPMSolverSampler=sampler_pkg.DPMSolverSampler,
        EDMSampler=sampler_pkg.EDMSampler,
        k_diffusion=importlib.import_module("diffbir.sampler.k_diffusion"),
        dpm_solver=importlib.import_module("diffbir.sampler.dpm_solver_pytorch"),
    )
    return ns


def source_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# --------------------------------------------------------------------------------------------
# Recording randomness
# --------------------------------------------------------------------------------------------


class NoiseRecorder:
    """Intercepts torch's random functions while active; records every returned tensor."""

    def __init__(self):
        self.draws: list[dict] = []
        self.tensors: list[torch.Tensor] = []
        self.paused = 0
        self._saved = []

    def add(self, kind: str, value: torch.Tensor, args=None):
        entry = {
            "index": len(self.draws),
            "kind": kind,
            "shape": list(value.shape),
            "dtype": str(value.dtype).replace("torch.", ""),
        }
        if args is not None:
            entry["args"] = args
        self.draws.append(entry)
        self.tensors.append(value.detach().clone())

    @contextmanager
    def pause(self):
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1

    def _wrap(self, name, orig):
        rec = self

        def wrapped(*args, **kwargs):
            out = orig(*args, **kwargs)
            if not rec.paused:
                rec.add(name, out)
            return out

        return wrapped

    def _guard(self, name, orig):
        rec = self

        def guarded(*args, **kwargs):
            if not rec.paused:
                raise RuntimeError(f"unrecorded random call {name} during a sampler run")
            return orig(*args, **kwargs)

        return guarded

    def __enter__(self):
        for name in RNG_FUNCS:
            orig = getattr(torch, name)
            self._saved.append((torch, name, orig))
            setattr(torch, name, self._wrap(name, orig))
        for name in GUARDED_TORCH:
            orig = getattr(torch, name)
            self._saved.append((torch, name, orig))
            setattr(torch, name, self._guard(name, orig))
        for name in GUARDED_TENSOR:
            orig = getattr(torch.Tensor, name)
            self._saved.append((torch.Tensor, name, orig))
            setattr(torch.Tensor, name, self._guard("Tensor." + name, orig))
        return self

    def __exit__(self, *exc):
        for owner, name, orig in reversed(self._saved):
            setattr(owner, name, orig)
        self._saved.clear()
        return False


@contextmanager
def ieee_sqrt():
    """Float32 square roots correctly rounded (IEEE 754), as CUDA and `f32::sqrt` compute them.

    PyTorch's CPU kernels take `sqrt` and `x ** 0.5` from MKL's VML, whose float32 results are
    not correctly rounded (one ULP off for about one input in six). The samplers are not
    sensitive to that anywhere but in one place: k-diffusion's `get_ancestral_step` at the
    first EDM step (sigma_from = 1e4) computes sigma_down = (sigma_to**2 - sigma_up**2)**0.5,
    a cancellation whose result is made of the last bits of sigma_up -- so CPU PyTorch, and
    DiffBIR on a GPU, disagree there (e.g. 0.0017 against 0.00098, exact 0.0012 for 3 v
    steps), and with them every later step of euler_a, dpm_2_a and dpm++_2s_a. The cases are
    made with the correctly rounded root, the original's behaviour on its GPUs; nothing else
    of PyTorch's arithmetic is touched.
    """

    def root(x: torch.Tensor) -> torch.Tensor:
        values = np.asarray(np.sqrt(x.detach().cpu().numpy()), dtype=np.float32)
        return torch.from_numpy(values.reshape(tuple(x.shape)))

    def applies(x, exponent=0.5) -> bool:
        return (isinstance(x, torch.Tensor) and x.dtype == torch.float32
                and isinstance(exponent, float) and exponent == 0.5 and not x.requires_grad)

    sqrt, t_sqrt, t_pow, pow_, t_method_pow = (
        torch.sqrt, torch.Tensor.sqrt, torch.Tensor.__pow__, torch.pow, torch.Tensor.pow)
    torch.sqrt = lambda x, *a, **k: root(x) if applies(x) and not a and not k else sqrt(x, *a, **k)
    torch.Tensor.sqrt = lambda x: root(x) if applies(x) else t_sqrt(x)
    torch.Tensor.__pow__ = lambda x, e: root(x) if applies(x, e) else t_pow(x, e)
    torch.Tensor.pow = lambda x, e: root(x) if applies(x, e) else t_method_pow(x, e)
    torch.pow = lambda x, e, *a, **k: root(x) if applies(x, e) and not a and not k else pow_(x, e, *a, **k)
    try:
        yield
    finally:
        torch.sqrt, torch.Tensor.sqrt, torch.Tensor.__pow__, torch.pow, torch.Tensor.pow = (
            sqrt, t_sqrt, t_pow, pow_, t_method_pow)


@contextmanager
def patched(owner, name, value):
    orig = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield orig
    finally:
        setattr(owner, name, orig)


def recording_brownian_sampler(orig_cls, rec: NoiseRecorder):
    """A BrownianTreeNoiseSampler whose construction (the tree's seed draw) and internal draws
    are not recorded, and whose returned values are recorded as `brownian_tree` draws."""

    class RecordingBrownianTreeNoiseSampler(orig_cls):
        def __init__(self, *args, **kwargs):
            with rec.pause():
                super().__init__(*args, **kwargs)

        def __call__(self, sigma, sigma_next):
            with rec.pause():
                out = super().__call__(sigma, sigma_next)
            rec.add("brownian_tree", out, args=[float(sigma), float(sigma_next)])
            return out

    return RecordingBrownianTreeNoiseSampler


# --------------------------------------------------------------------------------------------
# Stand-in model
# --------------------------------------------------------------------------------------------


class StandIn:
    """The analytic stand-in (STANDIN_FORMULA). Called as model(x, t, cond) like ControlLDM;
    `forward` is an attribute so that the samplers' tiling can wrap it."""

    def __init__(self, record_calls: bool):
        self.record_calls = record_calls
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.num_calls = 0
        self.forward = self._forward

    def _forward(self, x, t, cond):
        b = x.shape[0]
        tt = (t.to(torch.float32) / 1000).reshape(b, 1, 1, 1)
        ctx = cond["c_txt"].mean(dim=(1, 2)).reshape(b, 1, 1, 1)
        out = 0.8 * torch.tanh(x) * (1 - 0.5 * tt) + 0.3 * cond["c_img"] + 0.2 * ctx + 0.1 * tt
        self.num_calls += 1
        if self.record_calls:
            self.calls.append((x.clone(), t.clone(), out.clone()))
        return out

    def __call__(self, x, t, cond):
        return self.forward(x, t, cond)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@dataclass
class Spec:
    name: str
    sampler: str
    param: str  # "eps" | "v"
    steps: int
    cfg_scale: float = CFG_ON
    rescale_cfg: bool = False
    options: dict = field(default_factory=lambda: dict(DEFAULT_OPTIONS))
    start_point_type: str = "noise"
    variant: str | None = None  # label in the summary, e.g. "eta0.5"
    batch: int = LATENT_SHAPE[0]
    tiled: dict | None = None
    record_model_calls: bool = False
    seed: int | None = None
    notes: list = field(default_factory=list)


def short(sampler: str) -> str:
    return sampler.replace("++", "pp")


def fmt_num(v: float) -> str:
    s = f"{v:g}"
    return s.replace(".", "p")


def build_matrix() -> list[Spec]:
    specs: list[Spec] = []

    def add(sampler, param, steps, suffix="", **kw):
        name = f"sampler_{short(sampler)}_{param}_{steps}{suffix}"
        specs.append(Spec(name=name, sampler=sampler, param=param, steps=steps, **kw))

    for sampler in SAMPLERS:
        for param in ("eps", "v"):
            for steps in STEPS:
                # cfg on / off
                add(sampler, param, steps)
                add(sampler, param, steps, "_nocfg", cfg_scale=CFG_OFF, variant="nocfg")
                # eta (default 1.0 above)
                if sampler in ETA_SAMPLERS:
                    for eta in (0.5, 0.0):
                        add(sampler, param, steps, f"_eta{fmt_num(eta)}",
                            options={**DEFAULT_OPTIONS, "eta": eta}, variant=f"eta{eta:g}")
                # churn: all steps below s_tmax (the first step, sigma 1e4, never churns), and a
                # window that only some steps fall into
                if sampler in CHURN_SAMPLERS:
                    add(sampler, param, steps, "_churn",
                        options={**DEFAULT_OPTIONS, "s_churn": 3.0}, variant="churn")
                    add(sampler, param, steps, "_churn_window",
                        options={**DEFAULT_OPTIONS, "s_churn": 2.0, "s_tmin": 0.8, "s_tmax": 6.0,
                                 "s_noise": 1.003}, variant="churn_window")
                if sampler == "edm_lms":
                    for order in (2, 3, 4):
                        add(sampler, param, steps, f"_order{order}",
                            options={**DEFAULT_OPTIONS, "order": order}, variant=f"order{order}")
                # rescale_cfg (cosine ramp of the cfg scale over the model timestep): every step
                # count for spaced and dpm++_m2, a few for the others (size budget)
                if sampler == "dpm++_m2":
                    # the original's rescale in model_wrapper only works for batch 1 (see below)
                    add(sampler, param, steps, "_rescale_cfg", rescale_cfg=True, batch=1,
                        variant="rescale_cfg, batch 1")
                elif sampler == "spaced" or steps in RESCALE_STEPS:
                    add(sampler, param, steps, "_rescale_cfg", rescale_cfg=True, variant="rescale_cfg")
                # the `cond` start point of Pipeline.apply_cldm (sampler-independent; a few steps)
                if steps in COND_START_STEPS:
                    add(sampler, param, steps, "_cond_start", start_point_type="cond", variant="cond_start")
        # (dpm++_m2 + rescale_cfg with batch > 1 raises in the original -- `math.cos` of a
        # [B] tensor, dpm_solver_pytorch.py:346 --; the port takes the items' common time, so
        # that configuration has no case.)
    names = [s.name for s in specs]
    assert len(names) == len(set(names)), "duplicate case names"
    seeds = set()
    for s in specs:
        s.seed = zlib.crc32(s.name.encode()) & 0x7FFFFFFF
        assert s.seed not in seeds, f"seed collision for {s.name}"
        seeds.add(s.seed)
    return specs


def make_inputs(spec: Spec) -> dict[str, torch.Tensor]:
    """Inputs from a numpy generator seeded with the case seed (torch's RNG is re-seeded with
    the same seed right before the sampler call, so the recorded noise starts fresh)."""
    rng = np.random.default_rng(spec.seed)
    b = spec.batch
    shape = (b,) + LATENT_SHAPE[1:]
    txt = (b,) + TXT_SHAPE[1:]
    x_T = rng.standard_normal(shape, dtype=np.float32)
    c_txt = rng.standard_normal(txt, dtype=np.float32)
    c_img = (0.5 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    u_txt = rng.standard_normal(txt, dtype=np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return {
        "input.x_T": t(x_T),
        "input.cond.c_txt": t(c_txt),
        "input.cond.c_img": t(c_img),
        # Pipeline.apply_cldm: both branches encode the same condition image, only the prompt differs
        "input.uncond.c_txt": t(u_txt),
        "input.uncond.c_img": t(c_img.copy()),
    }


# --------------------------------------------------------------------------------------------
# Running one configuration of the original
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    error: str | None
    z: torch.Tensor | None
    steps: list  # result["steps"]
    step_x: list
    step_denoised: list
    sched: dict
    inter: dict
    rec: NoiseRecorder
    model: StandIn


def run_original(orig, spec_like: dict, inputs: dict, seed: int, record_model_calls: bool,
                 uncond_none: bool = False) -> RunResult:
    """Runs the original sampler on the stand-in model. `spec_like` holds the JSON-level config
    (sampler, steps, diffusion_config, rescale_cfg, sampler_options, cfg_scale,
    start_point_type, tiled)."""
    sampler_name = spec_like["sampler"]
    steps = spec_like["steps"]
    dcfg = spec_like["diffusion_config"]
    opts = spec_like["sampler_options"]
    rescale_cfg = spec_like["rescale_cfg"]
    cfg_scale = spec_like["cfg_scale"]
    tiled = spec_like["tiled"]

    diffusion = orig.Diffusion(**dcfg)
    betas = diffusion.betas
    parameterization = diffusion.parameterization

    model = StandIn(record_model_calls)
    rec = NoiseRecorder()
    step_info, step_x, step_denoised, sched, inter = [], [], [], {}, {}
    error = None
    z = None

    cond = {"c_txt": inputs["input.cond.c_txt"].clone(), "c_img": inputs["input.cond.c_img"].clone()}
    uncond = None if uncond_none else {
        "c_txt": inputs["input.uncond.c_txt"].clone(),
        "c_img": inputs["input.uncond.c_img"].clone(),
    }
    x_T = inputs["input.x_T"].clone()

    try:
        # As Pipeline.apply_cldm builds them (DDIM always with eta = 0).
        if sampler_name == "spaced":
            sampler = orig.SpacedSampler(betas, parameterization, rescale_cfg)
        elif sampler_name == "ddim":
            sampler = orig.DDIMSampler(betas, parameterization, rescale_cfg, eta=0)
        elif sampler_name.startswith("dpm"):
            sampler = orig.DPMSolverSampler(betas, parameterization, rescale_cfg, sampler_name)
        elif sampler_name.startswith("edm"):
            sampler = orig.EDMSampler(
                betas, parameterization, rescale_cfg, sampler_name,
                opts["s_churn"], opts["s_tmin"], opts["s_tmax"], opts["s_noise"], opts["eta"], opts["order"],
            )
        else:
            raise NotImplementedError(sampler_name)

        # Per-step observation hooks.
        if sampler_name in ("spaced", "ddim"):
            p_sample = sampler.p_sample

            def observed_p_sample(model_, x, model_t, t, cond_, uncond_, cur_cfg_scale):
                out = p_sample(model_, x, model_t, t, cond_, uncond_, cur_cfg_scale)
                step_info.append({"model_t": int(model_t[0]), "index": int(t[0]), "cfg_scale": float(cur_cfg_scale)})
                step_x.append(out.clone())
                return out

            sampler.p_sample = observed_p_sample
        elif sampler_name.startswith("edm"):
            solver_fn = sampler.solver_fn

            def observer(d):
                step_info.append({"i": int(d["i"]), "sigma": float(d["sigma"]), "sigma_hat": float(d["sigma_hat"])})
                step_x.append(d["x"].clone())
                step_denoised.append(d["denoised"].clone())

            def observed_solver_fn(model, x, sigmas, extra_args=None, callback=None, disable=None):
                # EDMSampler.sample passes callback=None; hand the solver our observer instead
                return solver_fn(model=model, x=x, sigmas=sigmas, extra_args=extra_args,
                                 callback=observer, disable=True)

            sampler.solver_fn = observed_solver_fn

        update = orig.dpm_solver.DPM_Solver.multistep_dpm_solver_update

        def observed_update(self, x, model_prev_list, t_prev_list, t, order, solver_type="dpmsolver"):
            out = update(self, x, model_prev_list, t_prev_list, t, order, solver_type=solver_type)
            step_info.append({"t_continuous": float(t), "order": int(order)})
            step_x.append(out.clone())
            return out

        brownian = recording_brownian_sampler(orig.k_diffusion.BrownianTreeNoiseSampler, rec)
        torch.manual_seed(seed)
        with rec, ieee_sqrt(), \
                patched(orig.dpm_solver.DPM_Solver, "multistep_dpm_solver_update", observed_update), \
                patched(orig.k_diffusion, "BrownianTreeNoiseSampler", brownian):
            if spec_like["start_point_type"] == "cond":
                # Pipeline.apply_cldm, start_point_type == "cond"
                x_0 = cond["c_img"]
                bs = x_0.shape[0]
                x_T = diffusion.q_sample(
                    x_0,
                    torch.full((bs,), diffusion.num_timesteps - 1, dtype=torch.long),
                    torch.randn(x_0.shape, dtype=torch.float32),
                )
                inter["inter.x_T_from_cond"] = x_T.clone()
            z = sampler.sample(
                model=model,
                device="cpu",
                steps=steps,
                x_size=tuple(x_T.shape),
                cond=cond,
                uncond=uncond,
                cfg_scale=cfg_scale,
                tiled=tiled is not None,
                tile_size=tiled["size"] if tiled else -1,
                tile_stride=tiled["stride"] if tiled else -1,
                x_T=x_T,
                progress=False,
            )
        if sampler_name == "spaced":
            sched["sched.timesteps"] = torch.from_numpy(np.asarray(sampler.timesteps, dtype=np.int64))
        elif sampler_name == "ddim":
            sched["sched.ddim_timesteps"] = torch.from_numpy(np.asarray(sampler.ddim_timesteps, dtype=np.int64))
        elif sampler_name.startswith("edm"):
            sched["sched.sigmas"] = sampler.sigmas.detach().clone()
            sched["sched.timesteps"] = sampler.timesteps.detach().clone()
    except Exception as e:  # noqa: BLE001 - the original's exception is the expected result
        error = f"{type(e).__name__}: {e}"
    return RunResult(error, z, step_info, step_x, step_denoised, sched, inter, rec, model)


# --------------------------------------------------------------------------------------------
# Writing a case
# --------------------------------------------------------------------------------------------


def param_word(param: str) -> str:
    return {"eps": "eps-prediction", "v": "v-prediction"}[param]


def summary_of(spec: Spec, error: bool) -> str:
    variant = f" ({spec.variant})" if spec.variant and spec.variant != "nocfg" else ""
    cfg = "cfg off (cfg_scale 1.0)" if spec.cfg_scale == 1.0 else "cfg on"
    steps = f"{spec.steps} step" + ("s" if spec.steps != 1 else "")
    s = (f"{spec.sampler} sampler, {steps}, {param_word(spec.param)}{variant}, "
         f"analytic stand-in model, {cfg}")
    if error:
        s += " -- the original raises (see expected_error)"
    return s


def compact_json(obj, width: int = 120) -> str:
    """Pretty JSON (indent 1) where every object or array that fits in `width` characters is
    written on one line (keeps the many small per-tensor / per-draw entries compact)."""

    def dump(o, indent: int) -> str:
        one = json.dumps(o, allow_nan=True)
        if not isinstance(o, (dict, list)) or len(one) + indent <= width or not o:
            return one
        pad = " " * (indent + 1)
        if isinstance(o, dict):
            items = [f"{pad}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        items = [pad + dump(v, indent + 1) for v in o]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"

    return dump(obj, 0) + "\n"


def case_notes(spec: Spec, res: RunResult) -> list[str]:
    notes = list(BASE_NOTES)
    if spec.sampler == "ddim":
        notes.append("DDIMSampler is built with eta = 0 as Pipeline.apply_cldm does (sampler_options.eta does not "
                     "apply to ddim).")
    if spec.cfg_scale == 1.0:
        notes.append(
            "cfg off: cfg_scale = 1.0. Every sampler of the original then evaluates the model once per "
            "evaluation point on the cond branch only (spaced/ddim/edm: `if uncond is None or cfg_scale == 1.0`; "
            "dpm++_m2 model_wrapper: `if guidance_scale == 1. or unconditional_condition is None`). input.uncond.* "
            "are stored but unused; the generator checks that passing uncond=None gives bit-identical results.")
    if spec.rescale_cfg:
        if spec.sampler == "dpm++_m2":
            notes.append("rescale_cfg for dpm++_m2 is applied inside DPM-Solver's model_wrapper: "
                         "cfg = 1 + scale*(1 - cos(pi*((1000 - t_input)/1000)**5))/2 with the fractional model time "
                         "t_input, using math.cos on the [B] time tensor, so it only works for batch size 1.")
        elif spec.sampler.startswith("edm"):
            notes.append("rescale_cfg for edm_*: Sampler.get_cfg_scale(cfg_scale, c_noise[0].item()) with c_noise "
                         "the timestep-table entry nearest to sigma.")
        else:
            notes.append("rescale_cfg: Sampler.get_cfg_scale(cfg_scale, model_t) = "
                         "1 + cfg_scale*(1 - cos(pi*((1000 - model_t)/1000)**5))/2 when cfg_scale > 1.")
    if spec.start_point_type == "cond":
        notes.append("start_point_type='cond': x_T = diffusion.q_sample(cond.c_img, t=T-1, noise.000) as in "
                     "Pipeline.apply_cldm; input.x_T only provides the shape.")
    if spec.sampler == "edm_lms" and spec.options["order"] == 1:
        notes.append("edm_lms with the CLI default order = 1 (a first-order linear multistep step, i.e. Euler).")
    if "churn" in (spec.variant or ""):
        o = spec.options
        notes.append(f"churn: gamma = min(s_churn/steps, sqrt(2)-1) on steps with s_tmin <= sigma_i <= s_tmax "
                     f"(s_churn={o['s_churn']}, s_tmin={o['s_tmin']}, s_tmax={o['s_tmax']}, s_noise={o['s_noise']}).")
    if spec.batch != LATENT_SHAPE[0]:
        notes.append(f"batch size {spec.batch}.")
    if res.error and "index 1000 is out of bounds" in res.error:
        c = 1000 // spec.steps
        ts = [int(v) + 1 for v in range(0, 1000, c)]
        notes.append(f"make_ddim_timesteps gives {ts} for {spec.steps} steps; indexing alphas_cumprod[1000] raises.")
    elif res.error and spec.sampler == "spaced" and spec.steps == 1:
        notes.append("SpacedSampler.make_schedule with 1 step: posterior_variance has one entry and "
                     "np.append(posterior_variance[1], posterior_variance[1:]) raises.")
    elif res.error and "UnboundLocalError" in res.error:
        notes.append("with 1 step the only step goes to sigma = 0 (the 'denoising step' branch, x = denoised), "
                     "which never assigns h; the loop's tail then reads it (dpm++_2m_sde: `h_last = h`, "
                     "dpm++_3m_sde: `h_1, h_2 = h, h_1`) and raises.")
    elif res.error and spec.sampler == "dpm++_m2" and spec.steps < 2:
        notes.append("DPM_Solver.sample (multistep) asserts steps >= order (order 2 for dpm++_m2).")
    elif res.error and spec.sampler == "dpm++_m2" and spec.rescale_cfg:
        notes.append("the rescale in model_wrapper calls math.cos on the [B] model-time tensor, which raises for B > 1.")
    elif res.error:
        notes.append("the original raises on this configuration.")
    return notes + spec.notes


def write_case(out_dir: Path, spec: Spec, inputs: dict, res: RunResult) -> dict:
    error = res.error
    tensors: dict[str, torch.Tensor] = dict(inputs)
    if not error:
        for i, t in enumerate(res.rec.tensors):
            tensors[f"noise.{i:03d}"] = t
        tensors.update(res.inter)
        for i, t in enumerate(res.step_denoised):
            tensors[f"step.{i:03d}.denoised"] = t
        for i, t in enumerate(res.step_x):
            tensors[f"step.{i:03d}.x"] = t
        tensors["output.z"] = res.z
        tensors.update(res.sched)
        if spec.record_model_calls:
            for i, (x, t, o) in enumerate(res.model.calls):
                tensors[f"model_call.{i:03d}.x"] = x
                tensors[f"model_call.{i:03d}.t"] = t
                tensors[f"model_call.{i:03d}.out"] = o
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}

    j: dict = {
        "builder": "sampler_run",
        "summary": summary_of(spec, bool(error)),
        "sampler": spec.sampler,
        "steps": spec.steps,
        "diffusion_config": DIFFUSION_CONFIGS[spec.param],
        "rescale_cfg": spec.rescale_cfg,
        "sampler_options": spec.options,
        "cfg_scale": spec.cfg_scale,
        "start_point_type": spec.start_point_type,
        "tiled": spec.tiled,
        "model": "standin",
        "standin_formula": STANDIN_FORMULA,
        "record_model_calls": spec.record_model_calls,
        "torch_seed": spec.seed,
        "expect_error": bool(error),
        "call": CALL,
        "inputs": INPUTS_DOC,
        "outputs": OUTPUTS_DOC,
        "notes": case_notes(spec, res),
    }
    if error:
        j["expected_error"] = error
        j["noise_draws"] = []
        j["tolerance"] = ERROR_TOLERANCE
    else:
        j["result"] = {"steps": res.steps, "num_model_calls": res.model.num_calls}
        j["noise_draws"] = res.rec.draws
        j["tolerance"] = dict(TOLERANCE)
        if spec.sampler.startswith("edm") and res.step_x:
            # The last EDM update x + d*(sigma_next - sigma) cancels down from |x|: the result
            # is only known to the spacing of float32 at the size of the state it started from
            # (10^4 for one step, up to 2.5*10^4 for the eps schedule's huge states).
            floor = 2.0 * float(np.spacing(np.float32(res.step_x[-1].abs().max().item())))
            if floor > TOLERANCE["atol"]:
                j["tolerance"]["outputs"] = {"output.z": {"atol": floor, "rtol": TOLERANCE["rtol"]}}
    j["case"] = spec.name
    j["set"] = "generated"
    j["reference_commit"] = REFERENCE_COMMIT
    j["generator"] = "xtask/reference/gen_sampler_sweep.py"
    j["format_version"] = 1
    j["io_file"] = f"{spec.name}.io.safetensors"
    j["tensors"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                    for k, v in tensors.items()}

    from safetensors.torch import save_file

    save_file(tensors, str(out_dir / j["io_file"]))
    (out_dir / f"{spec.name}.json").write_text(compact_json(j))
    return j


def spec_json(spec: Spec) -> dict:
    return {
        "sampler": spec.sampler,
        "steps": spec.steps,
        "diffusion_config": DIFFUSION_CONFIGS[spec.param],
        "rescale_cfg": spec.rescale_cfg,
        "sampler_options": spec.options,
        "cfg_scale": spec.cfg_scale,
        "start_point_type": spec.start_point_type,
        "tiled": spec.tiled,
    }


def same(a: RunResult, b: RunResult) -> bool:
    if (a.error is None) != (b.error is None):
        return False
    if a.error:
        return a.error == b.error
    pairs = [(a.z, b.z)] + list(zip(a.step_x, b.step_x)) + list(zip(a.step_denoised, b.step_denoised)) \
        + list(zip(a.rec.tensors, b.rec.tensors))
    return len(a.rec.tensors) == len(b.rec.tensors) and all(torch.equal(x, y) for x, y in pairs)


def generate(orig, out_dir: Path, only: str | None, versions: dict):
    specs = build_matrix()
    if only:
        specs = [s for s in specs if only in s.name]
    out_dir.mkdir(parents=True, exist_ok=True)
    index_cases = {}
    n_err = 0
    for k, spec in enumerate(specs):
        inputs = make_inputs(spec)
        res = run_original(orig, spec_json(spec), inputs, spec.seed, spec.record_model_calls)
        if spec.cfg_scale == 1.0:
            # cfg off: uncond=None must take the very same path
            res2 = run_original(orig, spec_json(spec), inputs, spec.seed, False, uncond_none=True)
            if not same(res, res2):
                sys.exit(f"{spec.name}: uncond=None and cfg_scale=1.0 differ in the original")
        if res.error is None:
            for t in [res.z] + res.step_x + res.step_denoised:
                if not torch.isfinite(t).all():
                    print(f"warning: {spec.name} has non-finite values", file=sys.stderr)
                    break
        else:
            n_err += 1
        j = write_case(out_dir, spec, inputs, res)
        index_cases[spec.name] = {
            "builder": "sampler_run",
            "summary": j["summary"],
            "json": f"{spec.name}.json",
            "io": j["io_file"],
            "weights": [],
        }
        if (k + 1) % 100 == 0:
            print(f"{k + 1}/{len(specs)} cases", file=sys.stderr)
    if not only:
        index = {
            "format_version": 1,
            "set": "generated",
            "cases": index_cases,
            "weight_files": {},
            "reference": {
                "implementation": "original PyTorch implementation of DiffBIR (release v2.1)",
                "repository": REFERENCE_REPO,
                "reference_commit": REFERENCE_COMMIT,
                "generator": "xtask/reference/gen_sampler_sweep.py",
                **versions,
                "device": "cpu",
                "dtype": "float32",
                "sampler_names": SAMPLERS,
            },
        }
        (out_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(specs)} cases ({n_err} expect an error) to {out_dir}")


# --------------------------------------------------------------------------------------------
# Checking the interception against the public cases
# --------------------------------------------------------------------------------------------


def check_public(orig, pub_dir: Path) -> int:
    from safetensors.torch import load_file

    worst_all = 0.0
    failures = 0
    checked = 0
    for path in sorted(pub_dir.glob("sampler_*.json")):
        j = json.loads(path.read_text())
        if j.get("builder") != "sampler_run" or j.get("model") != "standin":
            continue
        stored = load_file(str(pub_dir / j["io_file"]))
        inputs = {k: v for k, v in stored.items() if k.startswith("input.")}
        res = run_original(orig, j, inputs, j["torch_seed"], j.get("record_model_calls", False))
        problems = []
        if j.get("expect_error"):
            if res.error != j.get("expected_error"):
                problems.append(f"error {res.error!r} != {j.get('expected_error')!r}")
            worst = 0.0
        else:
            if res.error:
                problems.append(f"raised {res.error}")
            mine = {}
            for i, t in enumerate(res.rec.tensors):
                mine[f"noise.{i:03d}"] = t
            mine.update(res.inter)
            for i, t in enumerate(res.step_denoised):
                mine[f"step.{i:03d}.denoised"] = t
            for i, t in enumerate(res.step_x):
                mine[f"step.{i:03d}.x"] = t
            if res.z is not None:
                mine["output.z"] = res.z
            mine.update(res.sched)
            for i, (x, t, o) in enumerate(res.model.calls):
                mine[f"model_call.{i:03d}.x"] = x
                mine[f"model_call.{i:03d}.t"] = t
                mine[f"model_call.{i:03d}.out"] = o
            worst = 0.0
            worst_rel = 0.0
            for k, v in stored.items():
                if k.startswith("input."):
                    continue
                if k not in mine:
                    problems.append(f"{k} not produced")
                    continue
                m = mine[k]
                if m.shape != v.shape:
                    problems.append(f"{k} shape {tuple(m.shape)} != {tuple(v.shape)}")
                    continue
                a, e = m.double(), v.double()
                fin = torch.isfinite(e)
                if not torch.equal(torch.isfinite(a), fin):
                    problems.append(f"{k}: non-finite pattern differs")
                    continue
                d = (a[fin] - e[fin]).abs()
                if d.numel():
                    diff = d.max().item()
                    rel = (d / e[fin].abs().clamp_min(1.0)).max().item()
                    worst = max(worst, diff)
                    worst_rel = max(worst_rel, rel)
                    if rel > 1e-5:
                        problems.append(f"{k}: max |diff| {diff:.3e} (rel {rel:.3e})")
            extra = [k for k in mine if k not in stored and not k.startswith("model_call.")]
            if extra:
                problems.append(f"produced but not stored: {extra}")
            pub_draws = j.get("noise_draws", [])
            if len(pub_draws) != len(res.rec.draws):
                problems.append(f"{len(res.rec.draws)} draws, public {len(pub_draws)}")
            for a, b in zip(res.rec.draws, pub_draws):
                for key in ("kind", "shape", "dtype"):
                    if a[key] != b[key]:
                        problems.append(f"draw {a['index']} {key}: {a[key]} != {b[key]}")
                if "args" in b and any(abs(x - y) > 1e-6 * max(1.0, abs(y)) for x, y in zip(a.get("args", []), b["args"])):
                    problems.append(f"draw {a['index']} args {a.get('args')} != {b['args']}")
            if res.steps != j.get("result", {}).get("steps"):
                pub_steps = j.get("result", {}).get("steps")
                ok = len(res.steps) == len(pub_steps or []) and all(
                    x.keys() == y.keys() and all(abs(x[q] - y[q]) <= 1e-6 * max(1.0, abs(y[q])) for q in x)
                    for x, y in zip(res.steps, pub_steps))
                if not ok:
                    problems.append(f"result.steps {res.steps} != {pub_steps}")
            n_pub = j.get("result", {}).get("num_model_calls")
            if n_pub is not None and n_pub != res.model.num_calls:
                problems.append(f"num_model_calls {res.model.num_calls} != {n_pub}")
        checked += 1
        worst_all = max(worst_all, worst)
        status = "OK  " if not problems else "FAIL"
        failures += bool(problems)
        print(f"{status} {j['case']}: max|diff| {worst:.3e}, {len(res.rec.draws)} draws"
              + ("" if not problems else "  " + "; ".join(problems)))
    print(f"checked {checked} cases, {failures} failed, largest |diff| {worst_all:.3e}")
    return 1 if failures else 0


def versions_of() -> dict:
    import scipy
    import torchsde

    return {
        "torch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "torchsde_version": torchsde.__version__,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--diffbir", type=Path, help="root of the DiffBIR source at REFERENCE_COMMIT")
    ap.add_argument("--out", type=Path, default=Path("testing/fixtures/samplers"))
    ap.add_argument("--only", help="generate only the cases whose name contains this")
    ap.add_argument("--check-public", type=Path, metavar="DIR",
                    help="re-run the public sampler_run stand-in cases of DIR and compare")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--allow-other-commit", action="store_true")
    args = ap.parse_args()

    if args.list:
        for s in build_matrix():
            print(s.name)
        return 0
    if args.diffbir is None:
        ap.error("--diffbir is required")
    commit = source_commit(args.diffbir)
    if commit is None:
        print(f"note: {args.diffbir} is not a git checkout; assuming it is commit {REFERENCE_COMMIT}",
              file=sys.stderr)
    elif commit != REFERENCE_COMMIT and not args.allow_other_commit:
        sys.exit(f"{args.diffbir} is at {commit}, expected {REFERENCE_COMMIT} (--allow-other-commit to override)")

    # Known, harmless warnings of the original: torchsde's interval checks (the SDE samplers query
    # the tree at sigma_fn(t_fn(sigma)), a float32 round trip that can overshoot the interval end
    # by one ulp) and numpy's division by zero in the zero-SNR spaced tables (inf entries).
    warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
    warnings.filterwarnings("ignore", message="divide by zero", category=RuntimeWarning)
    torch.set_num_threads(1)
    orig = import_original(args.diffbir.resolve())
    if args.check_public:
        return check_public(orig, args.check_public)
    generate(orig, args.out, args.only, versions_of())
    return 0


if __name__ == "__main__":
    sys.exit(main())
