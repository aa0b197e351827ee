#!/usr/bin/env python3
"""Metric reference cases: runs BasicSR's and pyiqa's PSNR/SSIM, LPIPS and pyiqa's CLIP-IQA.

What it produces
----------------
Cases for `cargo xtask parity` in the fixture format of the public golden set (`NAME.json` +
`NAME.io.safetensors`, weight files, an `index.json`), for the image-quality metrics:

* `metric_scores`: full-reference PSNR and SSIM of uint8 image pairs, as BasicSR computes them
  (`basicsr/metrics/psnr_ssim.py`: `calculate_psnr`, `calculate_ssim`, the image as
  `cv2.imread` gives it, `input_order='HWC'`) and as pyiqa computes them (`pyiqa/archs/psnr_arch.py`,
  `ssim_arch.py` with the options of pyiqa's metrics `psnr`/`psnry` and `ssimc`/`ssim`, the
  image as pyiqa's `imread2tensor` gives it), for crop borders 0 and 4, on RGB and on the luma
  channel, on crops of real photos degraded with noise + JPEG, blur and noise; plus edge cases
  (identical images, constant planes, 11x11 and 13x17 images, gray images).
* `lpips_forward`: `lpips.LPIPS(net='alex'|'vgg', version='0.1')` (lpips 0.1.4) with a narrow
  trunk (torchvision's `alexnet().features` / `vgg16().features` layer for layer, fewer
  channels) and random linear heads; the trunk is written with `torch.save` (zip container,
  torchvision's key names) and the heads with the legacy container of `weights/v0.1/*.pth`.
* `clipiqa_forward`: pyiqa's `clipiqa` metric (`pyiqa/archs/clipiqa_arch.py` on
  `pyiqa/archs/clip_model.py`) with a tiny random OpenAI CLIP (ModifiedResNet image tower) in
  place of RN50.

Random weights are drawn with each case's seed, the crc32 of its name (the image pairs of the
PSNR/SSIM cases with that of `fr_pairs`, so all of them share the pairs).

Pinned reference
----------------
XPixelGroup/BasicSR at BASICSR_COMMIT (its metric files are imported by path from the folder
given with `--basicsr`), chaofengc/IQA-PyTorch (pyiqa) at PYIQA_COMMIT (`--pyiqa`), lpips 0.1.4
(the PyPI package, or the folder given with `--lpips`: a checkout of richzhang/PerceptualSimilarity
at tag v0.1.4), openai-clip 1.0.1 (the `clip` package pyiqa imports for its tokenizer) and the
PyPI packages pinned in `requirements-metrics.txt`. Nothing of any of them is copied here.

How to run
----------
    python3 -m venv /tmp/venv-metrics
    /tmp/venv-metrics/bin/pip install -r xtask/reference/requirements-metrics.txt
    /tmp/venv-metrics/bin/pip install --no-deps lpips==0.1.4 openai-clip==1.0.1
    /tmp/venv-metrics/bin/python xtask/reference/gen_metric_cases.py \
        --basicsr /tmp/basicsr-src --pyiqa /tmp/pyiqa-src \
        --images ../shared/images --out testing/fixtures/metrics
"""

from __future__ import annotations

import argparse
import collections
import copy
import importlib
import importlib.metadata
import importlib.util
import io
import json
import pickle
import pickletools
import struct
import sys
import types
import zlib
from pathlib import Path

import cv2
import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image

BASICSR_REPO = "XPixelGroup/BasicSR"
BASICSR_COMMIT = "8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a"
PYIQA_REPO = "chaofengc/IQA-PyTorch"
PYIQA_COMMIT = "01ae427f9afd66842031d3a7cb694dcad5b5cbb8"
LPIPS_REPO = "richzhang/PerceptualSimilarity"
LPIPS_VERSION = "0.1.4"
LPIPS_COMMIT = "3767a70e437c4020decf5888a83f438d2726a10f"  # tag v0.1.4
OPENAI_CLIP_VERSION = "1.0.1"
GENERATOR = "xtask/reference/gen_metric_cases.py"

FLOAT_TOL = {"rtol": 1e-4, "atol": 1e-5, "comment": "float32 forward pass"}


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def seed_all(name: str) -> np.random.Generator:
    torch.manual_seed(seed_of(name))
    return np.random.default_rng(seed_of(name))


def compact_json(obj, width: int = 120) -> str:
    def dump(o, indent: int) -> str:
        one = json.dumps(o, allow_nan=False)
        if not isinstance(o, (dict, list)) or len(one) + indent <= width or not o:
            return one
        pad = " " * (indent + 1)
        if isinstance(o, dict):
            items = [f"{pad}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        items = [pad + dump(v, indent + 1) for v in o]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"

    return dump(obj, 0) + "\n"


# --------------------------------------------------------------------------------------------
# The original code


def package_stub(name: str, path: Path | None = None) -> types.ModuleType:
    """An empty package `name` (its `__init__.py` is not run) whose submodules are looked up
    in `path`."""
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(path)] if path is not None else []
    sys.modules[name] = pkg
    return pkg


def module_stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Registry:
    """Stands in for the registries of BasicSR and pyiqa: `register()` returns the function."""

    def register(self, obj=None):
        return obj if obj is not None else (lambda o: o)


def import_basicsr(root: Path):
    """BasicSR's psnr_ssim.py (with metric_util.py and utils/color_util.py) loaded by path:
    `basicsr/__init__.py`, `basicsr/utils/__init__.py` (which pulls in the whole training stack)
    and the registry are stubbed."""
    src = root / "basicsr"
    package_stub("basicsr", src)
    utils = package_stub("basicsr.utils", src / "utils")
    package_stub("basicsr.metrics", src / "metrics")
    module_stub("basicsr.utils.registry", METRIC_REGISTRY=_Registry())
    color = load_file("basicsr.utils.color_util", src / "utils/color_util.py")
    utils.bgr2ycbcr, utils.rgb2ycbcr, utils.rgb2ycbcr_pt = color.bgr2ycbcr, color.rgb2ycbcr, color.rgb2ycbcr_pt
    load_file("basicsr.metrics.metric_util", src / "metrics/metric_util.py")
    return load_file("basicsr.metrics.psnr_ssim", src / "metrics/psnr_ssim.py")


class Pyiqa:
    """pyiqa's arch modules imported through stub packages: `pyiqa/__init__.py`,
    `pyiqa/utils/__init__.py` and `pyiqa/archs/__init__.py` are not run (they import every
    metric and its dependencies). Also stubbed: `matlab_utils/scfpyr_util.py` (CW-SSIM only; it
    needs scipy) and `archs/arch_util.py` (download helpers; huggingface_hub)."""

    def __init__(self, root: Path):
        src = root / "pyiqa"
        package_stub("pyiqa", src)
        package_stub("pyiqa.utils", src / "utils")
        package_stub("pyiqa.archs", src / "archs")
        module_stub("pyiqa.utils.registry", ARCH_REGISTRY=_Registry())
        module_stub("pyiqa.matlab_utils.scfpyr_util", SCFpyr_PyTorch=None)
        self.configs = importlib.import_module("pyiqa.default_model_configs").DEFAULT_CONFIGS
        self.color = importlib.import_module("pyiqa.utils.color_util")
        self.psnr = importlib.import_module("pyiqa.archs.psnr_arch")
        self.ssim = importlib.import_module("pyiqa.archs.ssim_arch")
        self.root = root

    def metric(self, name: str, **kwargs):
        """The network pyiqa's `create_metric(name, **kwargs)` builds (InferenceModel: the
        default `metric_opts` of `name`, updated with kwargs)."""
        opts = dict(self.configs[name]["metric_opts"])
        opts.update(kwargs)
        cls = {"PSNR": self.psnr.PSNR, "SSIM": self.ssim.SSIM}[opts.pop("type")]
        return cls(**opts).eval(), opts

    def clipiqa(self):
        """pyiqa's clipiqa_arch with its imports: `clip` is openai-clip (its tokenizer), which
        imports `pkg_resources` for a version check; setuptools >= 81 has none, so
        `pkg_resources.packaging` is stubbed with `packaging`."""
        if "pkg_resources" not in sys.modules:
            import packaging.version

            module_stub("pkg_resources", packaging=packaging)
        module_stub(
            "pyiqa.archs.arch_util",
            load_file_from_url=None,
            load_pretrained_network=None,
            get_url_from_name=lambda name, *a, **k: name,
        )
        clip_model = importlib.import_module("pyiqa.archs.clip_model")
        arch = importlib.import_module("pyiqa.archs.clipiqa_arch")
        return arch, clip_model


def import_lpips(folder: Path | None):
    """lpips 0.1.4: the installed package, or the `lpips/` package of a checkout. Its
    `trainer.py` (training only; scipy) is stubbed."""
    if folder is not None:
        sys.path.insert(0, str(folder))
    module_stub("lpips.trainer")
    import lpips

    return lpips


# --------------------------------------------------------------------------------------------
# Writing


def stable_legacy_keys(data: bytes) -> bytes:
    """torch.save's legacy container names each storage by its address (`str(storage._cdata)`),
    so two runs write different bytes. This renames the storages "0", "1", ... in the order the
    main pickle first refers to them and writes the storage records in the order of the new
    (sorted) key list; everything else stays byte for byte as torch.save wrote it. Only float32
    storages (4-byte elements) are expected."""
    spans, pos = [], 0
    for _ in range(5):  # magic number, protocol version, sys_info, the object, the storage keys
        end = next(p for op, _, p in pickletools.genops(io.BytesIO(data[pos:])) if op.name == "STOP")
        spans.append((pos, pos + end + 1))
        pos += end + 1
    old_keys = pickle.loads(data[spans[4][0]:spans[4][1]])
    records, rest = {}, data[spans[4][1]:]
    for key in old_keys:  # each record: int64 element count, then the elements
        n = 8 + 4 * struct.unpack("<q", rest[:8])[0]
        records[key], rest = rest[:n], rest[n:]
    assert not rest
    main = data[spans[3][0]:spans[3][1]]
    renamed, out, last = {}, bytearray(), 0
    for op, arg, p in pickletools.genops(main):
        if op.name == "BINUNICODE" and arg in records:
            new = renamed.setdefault(arg, str(len(renamed))).encode()
            out += main[last:p] + b"X" + struct.pack("<I", len(new)) + new
            last = p + 5 + len(arg.encode())
    out += main[last:]
    assert len(renamed) == len(old_keys)
    new_keys = sorted(renamed.values())
    by_new = {v: records[k] for k, v in renamed.items()}
    return (data[:spans[3][0]] + bytes(out) + pickle.dumps(new_keys, protocol=2)
            + b"".join(by_new[k] for k in new_keys))


class Writer:
    def __init__(self, out: Path):
        self.out = out
        self.cases: dict = {}
        self.weight_files: dict = {}
        out.mkdir(parents=True, exist_ok=True)

    def weights(self, file: str, state: dict, model_id: str, cls: str, config: dict, fmt: str) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(self.out / file))
        self.weight_files[file] = {"model": model_id, "class": cls, "config": config, "format": fmt}

    def torch_file(self, file: str, state: dict, model_id: str, cls: str, config: dict, legacy: bool) -> None:
        state = collections.OrderedDict((k, v.detach().clone().contiguous()) for k, v in state.items())
        if legacy:
            buf = io.BytesIO()
            torch.save(state, buf, _use_new_zipfile_serialization=False)
            data = stable_legacy_keys(buf.getvalue())
            loaded = torch.load(io.BytesIO(data), weights_only=True)
            assert list(loaded) == list(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
            (self.out / file).write_bytes(data)
            fmt = "torch.save legacy (non-zip) container of an OrderedDict (storage keys renamed, see notes)"
        else:
            torch.save(state, str(self.out / file))
            fmt = "torch.save zip container of an OrderedDict"
        self.weight_files[file] = {"model": model_id, "class": cls, "config": config, "format": fmt}

    def case(self, name: str, j: dict, tensors: dict, may_be_inf: tuple = ()) -> None:
        from safetensors.numpy import save_file

        arrays = {}
        for k, v in tensors.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().numpy()
            arrays[k] = np.ascontiguousarray(v)
        for k, v in arrays.items():
            if np.issubdtype(v.dtype, np.floating):
                if np.isnan(v).any() or (k not in may_be_inf and not np.isfinite(v).all()):
                    sys.exit(f"{name}: {k} has non-finite values")
        j = dict(j)
        j.update(
            {
                "case": name,
                "set": "generated",
                "generator": GENERATOR,
                "format_version": 1,
                "io_file": f"{name}.io.safetensors",
                "noise_draws": [],
                "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            }
        )
        save_file(arrays, str(self.out / j["io_file"]))
        (self.out / f"{name}.json").write_text(compact_json(j))
        self.cases[name] = {
            "builder": j["builder"],
            "summary": j["summary"],
            "json": f"{name}.json",
            "io": j["io_file"],
            "weights": [w["file"] for w in j.get("weights", [])],
        }

    def index(self, versions: dict) -> None:
        index = {
            "format_version": 1,
            "set": "generated",
            "cases": self.cases,
            "weight_files": self.weight_files,
            "reference": {
                "implementation": "image-quality metrics: BasicSR's PSNR/SSIM, pyiqa's PSNR/SSIM and CLIP-IQA, "
                "LPIPS v0.1",
                "repositories": {
                    "basicsr": {"repository": BASICSR_REPO, "reference_commit": BASICSR_COMMIT},
                    "pyiqa": {"repository": PYIQA_REPO, "reference_commit": PYIQA_COMMIT},
                    "lpips": {"repository": LPIPS_REPO, "reference_commit": LPIPS_COMMIT,
                              "version": LPIPS_VERSION},
                },
                "generator": GENERATOR,
                **versions,
                "device": "cpu",
            },
        }
        (self.out / "index.json").write_text(compact_json(index))


def cross_check(stored: dict, other: dict, how: str) -> dict:
    """The largest |difference| per output between the stored float32 run and `other`."""
    diffs = {k: float((stored[k].double() - v.double()).abs().max()) for k, v in other.items()}
    return {"how": how, "max_abs_diff": max(diffs.values()), "per_output": diffs}


# --------------------------------------------------------------------------------------------
# Images


def crop(images: Path, file: str, box: tuple[int, int, int, int], gray: bool = False) -> np.ndarray:
    """(x, y, w, h) of a photo as uint8 [h, w, 3] RGB, or [h, w, 1] for `gray` (PIL's 'L')."""
    x, y, w, h = box
    img = Image.open(images / "real47" / file).convert("L" if gray else "RGB")
    a = np.array(img.crop((x, y, x + w, y + h)))
    return a[..., None] if gray else a


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(np.round(img + rng.normal(0.0, sigma, img.shape)), 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip through OpenCV (the RGB image written as the BGR cv2 expects)."""
    if img.shape[2] == 1:
        ok, buf = cv2.imencode(".jpg", img[..., 0], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)[..., None]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def blurred(img: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (ksize, ksize), sigma).reshape(img.shape)


def as_cv2(img: np.ndarray) -> np.ndarray:
    """The array `cv2.imread` gives for a PNG of this image: BGR, or the gray plane as is."""
    return np.ascontiguousarray(img[..., ::-1]) if img.shape[2] == 3 else img


def as_pyiqa(img: np.ndarray) -> torch.Tensor:
    """The tensor pyiqa's inference path makes of the image file: PIL RGB, ToTensor."""
    return TF.to_tensor(Image.fromarray(img)).unsqueeze(0)


def fr_pairs(images: Path) -> list[dict]:
    """The three pairs shared by the basicsr_* and pyiqa_* RGB/Y cases: (restored, reference)."""
    rng = seed_all("fr_pairs")
    a = crop(images, "5.jpg", (190, 140, 128, 96))
    b = crop(images, "23.jpg", (36, 52, 128, 96))
    c = crop(images, "7.jpg", (61, 83, 67, 45))
    return [
        {"restored": jpeg(noisy(a, rng, 10.0), 30), "reference": a,
         "what": "128x96 crop of real47/5.jpg; restored: Gaussian noise sigma 10 (rounded, clipped), "
                 "then an OpenCV JPEG round trip at quality 30"},
        {"restored": blurred(b, 7, 1.6), "reference": b,
         "what": "128x96 crop of real47/23.jpg; restored: cv2.GaussianBlur (7x7, sigma 1.6)"},
        {"restored": noisy(c, rng, 12.0), "reference": c,
         "what": "67x45 crop of real47/7.jpg; restored: Gaussian noise sigma 12 (rounded, clipped)"},
    ]


# --------------------------------------------------------------------------------------------
# PSNR / SSIM cases

BASICSR_CALL = (
    "calculate_psnr(restored_bgr, reference_bgr, crop_border, input_order='HWC', test_y_channel=y_channel) "
    "and calculate_ssim(...) alike, where X_bgr is the stored RGB image with its channels reversed (the array "
    "cv2.imread gives for a PNG of it) or the HW1 gray image as is"
)

BASICSR_SEMANTICS = [
    "Crop: img[crop_border:-crop_border, crop_border:-crop_border] when crop_border != 0.",
    "y_channel on a 3-channel image (to_y_channel + bgr2ycbcr(y_only=True)): v = float32(u8) / 255 (float32); "
    "y = dot([B, G, R] as float64, [24.966, 128.553, 65.481]) + 16.0 in float64; y / 255 in float64, rounded to "
    "float32; then * 255 in float32; then widened to float64. The float32 result is the same for every one of "
    "the 2^24 pixel values whether the float64 dot is summed B, G, R in order or as numpy does. On a 1-channel "
    "image y_channel only does float32(v / 255) * 255 (float32), which returns v for every uint8 v.",
    "PSNR: float64 values, mse = mean over all pixels and channels of (a - b)^2; inf when mse == 0, else "
    "10 * log10(255^2 / mse).",
    "SSIM: per channel (in any order: the score is their mean), float64: window = outer(k, k) with "
    "k = cv2.getGaussianKernel(11, 1.5) (float64, not rounded to float32); mu = filter2D(img, window) "
    "restricted to the valid region ([5:-5, 5:-5]), likewise mu2, E[x^2], E[y^2], E[xy]; sigma1_sq = "
    "E[x^2] - mu1^2, sigma2_sq, sigma12 = E[xy] - mu1*mu2; c1 = (0.01*255)^2, c2 = (0.03*255)^2; ssim_map = "
    "((2 mu1 mu2 + c1)(2 sigma12 + c2)) / ((mu1^2 + mu2^2 + c1)(sigma1_sq + sigma2_sq + c2)); the score is the "
    "mean of the per-channel means. No ReLU on the contrast term. cv2.filter2D on float64 with an 11x11 kernel "
    "may use its DFT path; it differs from a direct sum by ~1e-13 (mu) and ~2e-11 (E[x^2]) absolute, far below "
    "the tolerance.",
]

PYIQA_SEMANTICS = [
    "Input: the uint8 RGB image as float32 [1, 3, H, W] = v / 255 (torchvision ToTensor); crop "
    "x[..., cb:-cb, cb:-cb] when crop_border != 0.",
    "Y (both metrics, when y_channel): the Y of YIQ, y = (0.299*R + 0.587*G) + 0.114*B in float32 with the "
    "weights rounded to float32 (rgb2yiq: a matmul with the 3x3 matrix; on the generating machine every pixel "
    "of these cases equals that plain float32 expression without fused multiply-adds, see result.y_check). "
    "This is not BasicSR's BT.601 luma.",
    "psnr-pyiqa (arch PSNR, options of metric `psnr` / `psnry`: data_range 1, eps 1e-8): float32 throughout: "
    "mse = mean((x - y)^2) over C, H, W (float32 reduction), score = 10 * log10(1 / (mse + 1e-8)) in float32; "
    "identical images give 80 (float32(80.0)). With y_channel the planes are the float32 Y, not rounded.",
    "ssim-pyiqa (arch SSIM, options of metric `ssimc` / `ssim`: downsample False, data_range 255, color_space "
    "yiq): planes = round_half_even(float32(x * 255)) for RGB (the uint8 values again), or "
    "round_half_even(float32(y * 255)) of the float32 Y; then float64. Window: fspecial(11, 1.5) = "
    "exp(-(x^2 + y^2) / (2 * 1.5^2)) on the 11x11 grid -5..5 in float64, normalised to sum 1, then ROUNDED TO "
    "float32 and widened back to float64 (BasicSR's window is not rounded). Valid-region correlation "
    "(F.conv2d, no padding) per channel; c1 = (0.01*255)^2, c2 = (0.03*255)^2; cs_map = relu((2 sigma12 + c2) "
    "/ (sigma1_sq + sigma2_sq + c2)); ssim_map = ((2 mu1 mu2 + c1) / (mu1^2 + mu2^2 + c1)) * cs_map; score = "
    "mean over channels and pixels (float64).",
]


def basicsr_scores(bsr, pairs: list[dict], crop_border: int, y_channel: bool) -> dict:
    out = {}
    for i, p in enumerate(pairs):
        a, b = as_cv2(p["restored"]), as_cv2(p["reference"])
        out[f"output.{i}.psnr"] = np.array(
            [bsr.calculate_psnr(a, b, crop_border, input_order="HWC", test_y_channel=y_channel)], dtype=np.float64)
        out[f"output.{i}.ssim"] = np.array(
            [bsr.calculate_ssim(a, b, crop_border, input_order="HWC", test_y_channel=y_channel)], dtype=np.float64)
    return out


def pair_tensors(pairs: list[dict]) -> dict:
    t = {}
    for i, p in enumerate(pairs):
        t[f"input.{i}.restored"] = p["restored"]
        t[f"input.{i}.reference"] = p["reference"]
    return t


def inf_note(outputs: dict) -> list[str]:
    infs = [k for k, v in outputs.items() if np.isinf(v).any()]
    return [f"{', '.join(infs)} is +inf (identical images): stored as inf in the io file."] if infs else []


def case_basicsr(w: Writer, bsr, name: str, pairs: list[dict], crop_border: int, y_channel: bool,
                 summary: str, notes: list[str] = ()) -> None:
    outputs = basicsr_scores(bsr, pairs, crop_border, y_channel)
    w.case(
        name,
        {
            "builder": "metric_scores",
            "summary": summary,
            "reference_repo": BASICSR_REPO,
            "reference_commit": BASICSR_COMMIT,
            "metrics": ["psnr", "ssim"],
            "crop_border": crop_border,
            "y_channel": y_channel,
            "pairs": len(pairs),
            "call": BASICSR_CALL,
            "semantics": BASICSR_SEMANTICS,
            "inputs": {
                "input.{i}.restored": "uint8 [H, W, 3] RGB or [H, W, 1] gray",
                "input.{i}.reference": "uint8, the same shape",
            },
            "outputs": {
                "output.{i}.psnr": "[1] float64, basicsr.metrics.psnr_ssim.calculate_psnr (dB; +inf when identical)",
                "output.{i}.ssim": "[1] float64, basicsr.metrics.psnr_ssim.calculate_ssim",
            },
            "pair_descriptions": [p["what"] for p in pairs],
            "notes": list(notes) + inf_note(outputs),
            "tolerance": {"rtol": 0.0, "atol": 1e-10,
                          "comment": "float64 arithmetic; an inf output must be inf"},
        },
        {**pair_tensors(pairs), **outputs},
        may_be_inf=tuple(k for k in outputs if k.endswith(".psnr")),
    )


def pyiqa_y_check(pq, pairs: list[dict], crop_border: int) -> dict:
    """How pyiqa's float32 Y relates to a plain float32 expression, and how close its SSIM
    rounding comes to ties (information for a port; not a test)."""
    w = [np.float32(0.299), np.float32(0.587), np.float32(0.114)]
    mismatch = total = near_tie = flips = 0
    for p in pairs:
        for img in (p["restored"], p["reference"]):
            x = as_pyiqa(img)
            if crop_border:
                x = x[..., crop_border:-crop_border, crop_border:-crop_border]
            y32 = pq.color.rgb2yiq(x)[0, 0].numpy()
            r, g, b = (x[0, k].numpy() for k in range(3))
            plain = (r * w[0] + g * w[1]) + b * w[2]
            mismatch += int((plain != y32).sum())
            total += y32.size
            s32 = pq.color.rgb2yiq(x)[0, 0] * 255
            s64 = pq.color.rgb2yiq(x.double())[0, 0] * 255
            near_tie += int(((s32 - s32.floor() - 0.5).abs() < 1e-3).sum())
            flips += int((s32.round().double() != s64.round()).sum())
    return {
        "pixels": total,
        "plain_float32_expression_mismatches": mismatch,
        "ssim_planes_within_1e-3_of_a_rounding_tie": near_tie,
        "ssim_planes_rounded_differently_from_float64_inputs": flips,
    }


def case_pyiqa(w: Writer, pq, name: str, pairs: list[dict], crop_border: int, y_channel: bool,
               summary: str, notes: list[str] = ()) -> None:
    psnr_name = "psnry" if y_channel else "psnr"
    ssim_name = "ssim" if y_channel else "ssimc"
    psnr_net, psnr_opts = pq.metric(psnr_name, crop_border=crop_border)
    ssim_net, ssim_opts = pq.metric(ssim_name, crop_border=crop_border)
    outputs, f64, diff = {}, {}, {}
    with torch.no_grad():
        for i, p in enumerate(pairs):
            x, y = as_pyiqa(p["restored"]), as_pyiqa(p["reference"])
            for key, net in ((f"output.{i}.psnr-pyiqa", psnr_net), (f"output.{i}.ssim-pyiqa", ssim_net)):
                score = net(x, y)
                outputs[key] = score.to(torch.float64).numpy().reshape(1)
                score64 = float(net(x.double(), y.double())[0])
                f64[key] = score64
                diff[key] = float(outputs[key][0]) - score64
    tol_outputs = {k: {"atol": 1e-7} for k in outputs if k.endswith(".ssim-pyiqa")}
    result = {"float64_inputs": f64, "float32_minus_float64": diff}
    if y_channel:
        result["y_check"] = pyiqa_y_check(pq, pairs, crop_border)
    w.case(
        name,
        {
            "builder": "metric_scores",
            "summary": summary,
            "reference_repo": PYIQA_REPO,
            "reference_commit": PYIQA_COMMIT,
            "metrics": ["psnr-pyiqa", "ssim-pyiqa"],
            "crop_border": crop_border,
            "y_channel": y_channel,
            "pairs": len(pairs),
            "pyiqa_metrics": {
                "psnr-pyiqa": {"metric": psnr_name, "arch": "pyiqa.archs.psnr_arch.PSNR", "options": psnr_opts},
                "ssim-pyiqa": {"metric": ssim_name, "arch": "pyiqa.archs.ssim_arch.SSIM", "options": ssim_opts},
            },
            "call": f"pyiqa.create_metric('{psnr_name}', crop_border={crop_border})(restored, reference) and "
            f"create_metric('{ssim_name}', crop_border={crop_border})(...), i.e. the arch built from "
            "DEFAULT_CONFIGS[metric]['metric_opts'] + crop_border, called on float32 [1, 3, H, W] tensors "
            "ToTensor makes of the stored RGB images",
            "semantics": PYIQA_SEMANTICS,
            "inputs": {
                "input.{i}.restored": "uint8 [H, W, 3] RGB",
                "input.{i}.reference": "uint8, the same shape",
            },
            "outputs": {
                "output.{i}.psnr-pyiqa": "[1] pyiqa's float32 score widened to float64",
                "output.{i}.ssim-pyiqa": "[1] pyiqa's float64 score",
            },
            "pair_descriptions": [p["what"] for p in pairs],
            "result": result,
            "notes": list(notes) + [
                "result.float64_inputs: the scores when the same tensors are given as .double() (information, "
                "not tested); result.float32_minus_float64: stored (float32-input) score minus that."
            ],
            "tolerance": {"rtol": 0.0, "atol": 1e-4,
                          "comment": "psnr-pyiqa is a float32 computation (mean of float32 squares, float32 log10); "
                          "ssim-pyiqa is float64 after exact integer planes",
                          "outputs": tol_outputs},
        },
        {**pair_tensors(pairs), **outputs},
    )


def fr_cases(w: Writer, bsr, pq, images: Path) -> None:
    pairs = fr_pairs(images)
    for y in (False, True):
        for cb in (0, 4):
            kind = "Y (BT.601 luma of BGR)" if y else "RGB"
            case_basicsr(w, bsr, f"fr_basicsr_{'y' if y else 'rgb'}_cb{cb}", pairs, cb, y,
                         f"BasicSR calculate_psnr/calculate_ssim, {kind}, crop_border {cb}: noise+JPEG, blur, "
                         "noise (67x45)")
    identical = {"restored": pairs[0]["reference"], "reference": pairs[0]["reference"],
                 "what": "identical images (the reference of pair 0 twice): pyiqa's PSNR gives 80 (its eps 1e-8)"}
    for y in (False, True):
        for cb in (0, 4):
            kind = "Y of YIQ (metrics psnry, ssim)" if y else "RGB (metrics psnr, ssimc)"
            extra = [identical] if cb == 0 else []
            case_pyiqa(w, pq, f"fr_pyiqa_{'y' if y else 'rgb'}_cb{cb}", pairs + extra, cb, y,
                       f"pyiqa PSNR/SSIM, {kind}, crop_border {cb}: noise+JPEG, blur, noise (67x45)"
                       + (", identical pair" if extra else ""))

    # Edge cases
    rng = seed_all("fr_basicsr_edges")
    same = crop(images, "11.jpg", (150, 100, 32, 24))
    c0 = np.empty((20, 24, 3), np.uint8)
    c0[:] = (100, 150, 30)
    c1 = np.empty((20, 24, 3), np.uint8)
    c1[:] = (130, 140, 60)
    e11 = crop(images, "9.jpg", (90, 90, 11, 11))
    e13 = crop(images, "12.jpg", (150, 150, 17, 13))
    gray = crop(images, "46.jpg", (60, 40, 48, 36), gray=True)
    edges = [
        {"restored": same, "reference": same.copy(), "what": "identical 32x24 crops: PSNR inf, SSIM 1"},
        {"restored": c0, "reference": c1,
         "what": "constant planes 24x20, RGB (100, 150, 30) vs (130, 140, 60): zero variances"},
        {"restored": noisy(e11, rng, 10.0), "reference": e11,
         "what": "exactly 11x11 (SSIM's valid region is one pixel), noise sigma 10"},
        {"restored": noisy(e13, rng, 10.0), "reference": e13, "what": "13 high, 17 wide, noise sigma 10"},
        {"restored": jpeg(noisy(gray, rng, 8.0), 30), "reference": gray,
         "what": "gray [36, 48, 1] crop of real47/46.jpg (a grayscale JPEG), noise sigma 8 + JPEG q30"},
    ]
    case_basicsr(w, bsr, "fr_basicsr_edges", edges, 0, False,
                 "BasicSR PSNR/SSIM edge cases: identical images (inf), constant planes, 11x11, 13x17, gray HW1")

    rng = seed_all("fr_basicsr_gray_y")
    g = [crop(images, "46.jpg", box, gray=True) for box in [(20, 30, 40, 40), (120, 60, 40, 40), (80, 90, 40, 40)]]
    gray_pairs = [
        {"restored": noisy(g[0], rng, 8.0), "reference": g[0], "what": "40x40 gray crop, noise sigma 8"},
        {"restored": blurred(g[1], 5, 1.2), "reference": g[1], "what": "40x40 gray crop, GaussianBlur 5x5 sigma 1.2"},
        {"restored": jpeg(g[2], 30), "reference": g[2], "what": "40x40 gray crop, JPEG q30"},
    ]
    case_basicsr(w, bsr, "fr_basicsr_gray_y", gray_pairs, 7, True,
                 "BasicSR PSNR/SSIM on gray HW1 images with test_y_channel=True, crop_border 7 (26x26 left)",
                 notes=["to_y_channel on a 1-channel image is float32(v / 255) * 255, which is v for every "
                        "uint8 v: the same scores as y_channel false."])


# --------------------------------------------------------------------------------------------
# LPIPS

LPIPS_NETS = {
    # taps: the index ranges of torchvision's `features` in lpips' slice1..slice5
    "alex": {"tv": "alexnet", "widths": [16, 48, 96, 64, 64], "taps": [[0, 2], [2, 5], [5, 8], [8, 10], [10, 12]],
             "released_widths": [64, 192, 384, 256, 256], "min_side": 31},
    "vgg": {"tv": "vgg16", "widths": [8, 16, 32, 64, 64], "taps": [[0, 4], [4, 9], [9, 16], [16, 23], [23, 30]],
            "released_widths": [64, 128, 256, 512, 512], "min_side": 16},
}


def narrow_features(net: str) -> torch.nn.Sequential:
    """torchvision's `features` of the net, layer for layer (same kernels, strides, paddings,
    pools, ReLUs, Sequential indices), every convolution at the narrow width of its tap, with
    random weights (He-normal, fan-in) and biases (normal, std 0.05)."""
    spec = LPIPS_NETS[net]
    with torch.device("meta"):
        released = getattr(torchvision.models, spec["tv"])().features
    layers = []
    in_ch = 3
    for idx, m in enumerate(released):
        if isinstance(m, torch.nn.Conv2d):
            tap = next(k for k, (a, b) in enumerate(spec["taps"]) if a <= idx < b)
            out_ch = spec["widths"][tap]
            conv = torch.nn.Conv2d(in_ch, out_ch, m.kernel_size, stride=m.stride, padding=m.padding)
            with torch.no_grad():
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                conv.bias.normal_(0.0, 0.05)
            layers.append(conv)
            in_ch = out_ch
        else:
            layers.append(copy.deepcopy(m))
    return torch.nn.Sequential(*layers)


def trunk_layout(features: torch.nn.Sequential) -> list:
    out = []
    for idx, m in enumerate(features):
        if isinstance(m, torch.nn.Conv2d):
            out.append({"index": idx, "layer": "conv", "in": m.in_channels, "out": m.out_channels,
                        "kernel": m.kernel_size[0], "stride": m.stride[0], "padding": m.padding[0]})
        elif isinstance(m, torch.nn.MaxPool2d):
            out.append({"index": idx, "layer": "maxpool", "kernel": m.kernel_size, "stride": m.stride,
                        "padding": m.padding, "ceil_mode": m.ceil_mode})
        else:
            out.append({"index": idx, "layer": "relu"})
    return out


def lpips_model(lpips, net: str):
    """The official lpips.LPIPS (v0.1, lin heads on) whose trunk constructor is handed the
    narrow features, with lin0..lin4 rebuilt as NetLinLayer at the narrow widths."""
    spec = LPIPS_NETS[net]
    features = narrow_features(net)
    pn = lpips.pretrained_networks
    original = getattr(pn.tv, spec["tv"])
    setattr(pn.tv, spec["tv"], lambda pretrained=False, **kw: types.SimpleNamespace(features=features))
    try:
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", lpips=True, pnet_rand=True, verbose=False)
    finally:
        setattr(pn.tv, spec["tv"], original)
    model.chns = list(spec["widths"])
    model.L = len(model.chns)
    lins = []
    for k, width in enumerate(model.chns):
        lin = lpips.NetLinLayer(width, use_dropout=True)
        with torch.no_grad():
            lin.model[1].weight.copy_(torch.randn_like(lin.model[1].weight).mul_(0.1).abs_())
        setattr(model, f"lin{k}", lin)
        lins.append(lin)
    model.lins = torch.nn.ModuleList(lins)
    return model.eval(), features


def lpips_inputs(images: Path, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(in0, in1) float32 NCHW in [0, 1]: real-photo crops and degraded versions of them."""
    def f32(batch):
        return np.stack([b.transpose(2, 0, 1) for b in batch]).astype(np.float32) / np.float32(255)

    a = crop(images, "3.jpg", (60, 40, 64, 64))
    b = crop(images, "13.jpg", (110, 70, 64, 64))
    c = crop(images, "27.jpg", (40, 80, 45, 67))
    return [
        (f32([a, b]), f32([jpeg(noisy(a, rng, 12.0), 40), blurred(b, 5, 1.5)])),
        (f32([c]), f32([blurred(noisy(c, rng, 8.0), 3, 0.8)])),
    ]


def case_lpips(w: Writer, lpips, images: Path, net: str) -> None:
    name = f"lpips_{net}_narrow"
    rng = seed_all(name)
    spec = LPIPS_NETS[net]
    model, features = lpips_model(lpips, net)
    trunk_state = collections.OrderedDict()
    for s in range(1, 6):
        for k, v in getattr(model.net, f"slice{s}").state_dict().items():
            trunk_state[f"features.{k}"] = v
    lin_state = collections.OrderedDict((f"lin{k}.model.1.weight", model.lins[k].model[1].weight) for k in range(5))
    trunk_file, lin_file = f"{name}.trunk.pth", f"{name}.lin.pth"
    config = {"net": net, "widths": spec["widths"]}
    w.torch_file(trunk_file, trunk_state, f"{name}.trunk", f"torchvision.models.{spec['tv']}().features (narrow)",
                 config, legacy=False)
    w.torch_file(lin_file, lin_state, f"{name}.lin", "lpips.NetLinLayer x5 (lin0..lin4, use_dropout=True)",
                 config, legacy=True)
    tensors = {}
    with torch.no_grad():
        for i, (in0, in1) in enumerate(lpips_inputs(images, rng)):
            t0, t1 = torch.from_numpy(in0), torch.from_numpy(in1)
            val, res = model(t0, t1, retPerLayer=True, normalize=True)
            tensors[f"input.{i}.in0"], tensors[f"input.{i}.in1"] = t0, t1
            tensors[f"output.{i}.lpips"] = val
            for k in range(5):
                tensors[f"output.{i}.res{k}"] = res[k]
    for k, v in tensors.items():
        if k.startswith("output.") and not (v.abs() > 0).all():
            sys.exit(f"{name}: {k} is degenerate")
    model64, in64 = copy.deepcopy(model).double(), {}
    with torch.no_grad():
        for i in range(2):
            val, res = model64(tensors[f"input.{i}.in0"].double(), tensors[f"input.{i}.in1"].double(),
                               retPerLayer=True, normalize=True)
            in64[f"output.{i}.lpips"] = val
            for k in range(5):
                in64[f"output.{i}.res{k}"] = res[k]
    w.case(
        name,
        {
            "builder": "lpips_forward",
            "summary": f"LPIPS v0.1 (lpips 0.1.4) on a narrow {net} trunk "
            f"(widths {'/'.join(map(str, spec['widths']))}) with random lin heads",
            "reference_repo": LPIPS_REPO,
            "reference_commit": LPIPS_COMMIT,
            "reference_version": f"lpips {LPIPS_VERSION}",
            "module": "LPIPS",
            "module_class": "lpips.LPIPS",
            "config": {"pretrained": False, "net": net, "version": "0.1", "lpips": True, "spatial": False,
                       "pnet_rand": True, "use_dropout": True},
            "net": net,
            "widths": spec["widths"],
            "released_widths": spec["released_widths"],
            "normalize": True,
            "pairs": 2,
            "min_side": spec["min_side"],
            "trunk": {"taps": spec["taps"], "layers": trunk_layout(features)},
            "weights": [{"file": trunk_file, "module_path": "trunk"}, {"file": lin_file, "module_path": "lin"}],
            "mode": "eval",
            "call": "val, res = model(in0, in1, retPerLayer=True, normalize=True)",
            "semantics": [
                "normalize: x = 2*x - 1; ScalingLayer: (x - shift) / scale, shift = [-0.030, -0.088, -0.188], scale "
                "= [0.458, 0.448, 0.450] (float32 buffers, per channel).",
                "The trunk runs torchvision's features; the k-th tap is the output of layers taps[k][0] .. "
                "taps[k][1]-1 (each tap ends after a ReLU); weights file `trunk` holds features.{index}.weight/bias "
                "as torchvision names them.",
                "Per tap: f = x / (sqrt(sum over channels of x^2) + 1e-10) for both images; d = (f0 - f1)^2; "
                "res_k = mean over H, W of lin_k(d), lin_k a bias-free 1x1 conv to one channel (key "
                "lin{k}.model.1.weight, [1, C, 1, 1]; model.0 is a Dropout, inactive in eval).",
                "val = ((((0 + res_0) + res_1) + res_2) + res_3) + res_4, shape [N, 1, 1, 1].",
            ],
            "inputs": {"input.{i}.in0": "float32 [N, 3, H, W] in [0, 1] (uint8 / 255 of real-photo crops)",
                       "input.{i}.in1": "float32, the same shape (degraded versions)"},
            "outputs": {"output.{i}.lpips": "[N, 1, 1, 1] val",
                        "output.{i}.res{k}": "[N, 1, 1, 1] per-tap distance res[k], k = 0..4"},
            "notes": [
                f"{trunk_file}: torch.save of an OrderedDict (zip container, torchvision key names); {lin_file}: "
                "torch.save(..., _use_new_zipfile_serialization=False) of an OrderedDict, the legacy container "
                "of lpips' own weights/v0.1/*.pth, with their key names; its storage records are named 0..4 "
                "where torch.save names them by address (str(storage._cdata), different on every run).",
                "Trunk weights: He-normal (fan-in, relu) with biases ~ N(0, 0.05); lin weights |N(0, 0.1)| (the "
                "released heads average 0.04 to 0.11).",
            ],
            "cross_check": cross_check(tensors, in64, "the same model and inputs in float64"),
            "tolerance": {"rtol": 1e-4, "atol": 1e-6,
                          "comment": "float32 forward pass; the outputs are 4e-4 to 3e-2, so the absolute part is "
                          "1e-6 rather than 1e-5 (the float64 run differs by < 1e-8, see cross_check)"},
        },
        tensors,
    )


# --------------------------------------------------------------------------------------------
# CLIP-IQA

CLIP_TINY = {
    "embed_dim": 32,
    "image_resolution": 64,
    "vision_layers": [1, 1, 1, 1],
    "vision_width": 8,
    "vision_patch_size": None,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 16,
    "transformer_heads": 2,
    "transformer_layers": 2,
}


CLIP_CALIBRATION = [("1.jpg", (100, 50, 64, 64)), ("2.jpg", (120, 40, 64, 64)), ("4.jpg", (80, 60, 64, 64)),
                    ("11.jpg", (150, 150, 64, 64)), ("15.jpg", (90, 90, 64, 64)), ("24.jpg", (40, 50, 64, 64))]


def tiny_clip(clip_model, calibration: torch.Tensor):
    """clip_model.CLIP at the CLIP_TINY sizes, every parameter drawn at random, taken through
    what `load` does to a state-dict checkpoint on CPU (convert_weights to float16, float());
    the image tower's batch-norm statistics are then those of `calibration` (a batch of
    normalised real-photo crops), so that the features depend on the image rather than on the
    random statistics."""
    c = dict(CLIP_TINY)
    c["vision_layers"] = tuple(c["vision_layers"])
    model = clip_model.CLIP(**c)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.6, 1.4)
                m.bias.normal_(0.0, 0.1)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0.0, 0.05)
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_bias.normal_(0.0, 0.05)
                m.out_proj.bias.normal_(0.0, 0.05)
            elif isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.normal_(0.0, 0.05)
    clip_model.convert_weights(model)
    model.float()
    # The token embedding (49408 rows, most of the file) is stored in float16 to keep the
    # case small; its values are rounded to float16 here so the reference runs on the same.
    with torch.no_grad():
        model.token_embedding.weight.copy_(model.token_embedding.weight.half().float())
    norms = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        model.visual.train()(calibration)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def case_clipiqa(w: Writer, pq, images: Path) -> None:
    name = "clipiqa_tiny"
    seed_all(name)
    arch, clip_model = pq.clipiqa()
    import clip

    mean = torch.tensor(arch.OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(arch.OPENAI_CLIP_STD).view(1, 3, 1, 1)
    calibration = torch.cat([as_pyiqa(crop(images, f, box)) for f, box in CLIP_CALIBRATION])
    model = tiny_clip(clip_model, (calibration - mean) / std)
    original = arch.load
    arch.load = lambda backbone, device: model
    try:
        metric = arch.CLIPIQA(model_type="clipiqa", backbone="RN50", pretrained=True, pos_embedding=False).eval()
    finally:
        arch.load = original
    opts = dict(pq.configs["clipiqa"]["metric_opts"])
    assert opts == {"type": "CLIPIQA"}, opts
    weights = f"{name}.weights.safetensors"
    state = dict(model.state_dict())
    state["token_embedding.weight"] = state["token_embedding.weight"].half()
    w.weights(weights, state, name, "pyiqa.archs.clip_model.CLIP", CLIP_TINY,
              "safetensors, float32 (token_embedding.weight float16, int64 num_batches_tracked), "
              "OpenAI CLIP key names")

    recorded = {}
    enc_image, enc_text = model.encode_image, model.encode_text
    model.encode_image = lambda image, pos: recorded.setdefault("image", enc_image(image, pos))
    model.encode_text = lambda text: recorded.setdefault("text", enc_text(text))
    crops = [crop(images, "14.jpg", (100, 60, 64, 64)), crop(images, "29.jpg", (70, 40, 80, 48))]
    tensors = {"input.tokens": metric.prompt_pairs.to(torch.int64)}
    in64 = {}

    def run(x: torch.Tensor, i: int, out: dict) -> None:
        recorded.clear()
        score = metric(x)  # CLIPIQA.forward casts the CLIP model to x's dtype
        image = recorded["image"] / recorded["image"].norm(dim=-1, keepdim=True)
        text = recorded["text"] / recorded["text"].norm(dim=-1, keepdim=True)
        out[f"output.{i}.score"] = score
        out[f"output.{i}.image_features"] = image
        out[f"output.{i}.logits"] = model.logit_scale.exp() * image @ text.t()
        out["output.text_features"] = text

    with torch.no_grad():
        for i, img in enumerate(crops):
            x = as_pyiqa(img)
            tensors[f"input.{i}.image"] = x
            run(x, i, tensors)
            ln_forward = clip_model.LayerNorm.forward  # it computes in float32 whatever the input
            clip_model.LayerNorm.forward = torch.nn.LayerNorm.forward
            try:
                run(x.double(), i, in64)
            finally:
                clip_model.LayerNorm.forward = ln_forward
                model.float()
    model.encode_image, model.encode_text = enc_image, enc_text
    prompts = ["Good image", "bad image", "Sharp image", "blurry image", "sharp edges", "blurry edges",
               "High resolution image", "low resolution image", "Noise-free image", "noisy image"]
    assert torch.equal(metric.prompt_pairs, clip.tokenize(prompts)), "the arch's prompts changed"
    scores = [float(tensors[f"output.{i}.score"]) for i in range(len(crops))]
    if not all(0.02 < s < 0.98 for s in scores):
        sys.exit(f"{name}: saturated scores {scores}")
    vision_heads = CLIP_TINY["vision_width"] * 32 // 64
    w.case(
        name,
        {
            "builder": "clipiqa_forward",
            "summary": "pyiqa CLIP-IQA (metric `clipiqa`: RN50 backbone replaced by a tiny random ModifiedResNet "
            "CLIP), prompt-pair ensemble, no positional embedding",
            "reference_repo": PYIQA_REPO,
            "reference_commit": PYIQA_COMMIT,
            "module": "CLIPIQA",
            "module_class": "pyiqa.archs.clipiqa_arch.CLIPIQA",
            "config": {"model_type": "clipiqa", "backbone": "RN50 (replaced)", "pretrained": True,
                       "pos_embedding": False},
            "clip_config": {**CLIP_TINY, "vision_heads": vision_heads,
                            "attnpool_embed_dim": CLIP_TINY["vision_width"] * 32,
                            "attnpool_spacial_dim": CLIP_TINY["image_resolution"] // 32},
            "pos_embedding": False,
            "prompts": prompts,
            "prompt_pairs": [[prompts[2 * k], prompts[2 * k + 1]] for k in range(5)],
            "weights": [{"file": weights, "module_path": ""}],
            "mode": "eval",
            "call": "score = CLIPIQA(model_type='clipiqa', pos_embedding=False)(x), x float32 [1, 3, H, W] in [0, 1]",
            "semantics": [
                "x = (x - mean) / std with mean = (0.48145466, 0.4578275, 0.40821073), std = (0.26862954, "
                "0.26130258, 0.27577711) as float32 tensors; no resize or crop: the image tower sees the image at "
                "its own size.",
                "Image tower (ModifiedResNet): stem conv1 (3x3 stride 2, pad 1) bn1 relu, conv2 (3x3) bn2 relu, "
                "conv3 (3x3) bn3 relu, AvgPool2d(2); layer1..4 of Bottlenecks (1x1, 3x3, AvgPool2d(stride) when "
                "stride > 1, 1x1 to 4x planes; downsample = AvgPool2d(stride), 1x1 conv, bn when stride > 1 or "
                "the width changes; relu after the sum); batch norms use running statistics (eps 1e-5).",
                "AttentionPool2d with pos_embedding=False: tokens = [mean over HW; the HW feature vectors] "
                "((HW+1), N, C), NO positional embedding added (visual.attnpool.positional_embedding is unused), "
                "multi-head attention (vision_heads heads) with q/k/v_proj and c_proj, output = token 0.",
                "Text tower: token_embedding(tokens) + positional_embedding, `transformer_layers` residual blocks "
                "(x + attn(ln_1(x)) with the causal mask, x + mlp(ln_2(x)), mlp = c_fc, QuickGELU x*sigmoid(1.702x), "
                "c_proj), ln_final, the row at argmax(tokens) (the end-of-text token) @ text_projection.",
                "Both feature sets are divided by their L2 norm; logits = exp(logit_scale) * img @ text.T "
                "([N, 10]); probs = softmax over each consecutive pair (logits.reshape(N, 5, 2)); score = mean "
                "over the 5 pairs of the first (positive) prompt's probability, shape [N, 1].",
                "Tokens: openai-clip 1.0.1's clip.tokenize (the BPE of bpe_simple_vocab_16e6.txt.gz, context 77, "
                "<|startoftext|> 49406, <|endoftext|> 49407, zero padding).",
            ],
            "inputs": {"input.tokens": "[10, 77] int64 clip.tokenize(prompts) (as the arch builds them)",
                       "input.{i}.image": "float32 [1, 3, H, W] in [0, 1] (uint8 / 255 of a real-photo crop)"},
            "outputs": {
                "output.{i}.score": "[1, 1] CLIP-IQA score",
                "output.{i}.image_features": "[1, embed_dim] image features divided by their norm",
                "output.{i}.logits": "[1, 10] logit_scale.exp() * image_features @ text_features.T",
                "output.text_features": "[10, embed_dim] text features of the prompts divided by their norm",
            },
            "notes": [
                "The tiny CLIP is taken through load()'s path for a state-dict checkpoint: convert_weights "
                "(conv/linear/attention weights and projections to float16), float(), eval(); so those weights are "
                "float16-representable. The image tower's batch-norm running statistics are those of a batch of "
                "six other real-photo crops (one train-mode pass), so that the features depend on the image. "
                "logit_scale is CLIP's initial ln(1/0.07) (the released models have ln(100), which saturates "
                "these random features' softmax).",
                "The text tower's heads are set to 2 (build_model would derive width // 64 = 0 from a 16-wide "
                "state dict); the image tower's heads are vision_width * 32 // 64, fixed by CLIP itself.",
            ],
            "cross_check": cross_check(tensors, in64, "the same call on float64 inputs (the arch casts the CLIP "
                                       "model to the input's dtype), float64 throughout (clip_model.LayerNorm's "
                                       "float32 cast bypassed for this run)"),
            "tolerance": dict(FLOAT_TOL),
        },
        tensors,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--basicsr", type=Path, required=True, help="BasicSR checkout at the pinned commit")
    ap.add_argument("--pyiqa", type=Path, required=True, help="IQA-PyTorch checkout at the pinned commit")
    ap.add_argument("--lpips", type=Path, default=None,
                    help="PerceptualSimilarity checkout at v0.1.4 (default: the installed lpips 0.1.4)")
    ap.add_argument("--images", type=Path, required=True, help="the shared images folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bsr = import_basicsr(args.basicsr)
    pq = Pyiqa(args.pyiqa)
    lpips = import_lpips(args.lpips)
    if args.lpips is None and importlib.metadata.version("lpips") != LPIPS_VERSION:
        sys.exit(f"lpips {importlib.metadata.version('lpips')} is installed, {LPIPS_VERSION} is pinned")
    w = Writer(args.out)
    fr_cases(w, bsr, pq, args.images)
    for net in LPIPS_NETS:
        case_lpips(w, lpips, args.images, net)
    case_clipiqa(w, pq, args.images)
    w.index({
        "torch_version": torch.__version__.split("+")[0],
        "torchvision_version": torchvision.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "opencv_version": cv2.__version__,
        "pillow_version": PIL.__version__,
        "lpips_version": LPIPS_VERSION,
        "openai_clip_version": importlib.metadata.version("openai-clip"),
    })


if __name__ == "__main__":
    main()
