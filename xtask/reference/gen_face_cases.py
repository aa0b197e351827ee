#!/usr/bin/env python3
"""Face reference cases: runs the ORIGINAL face helper of DiffBIR and facexlib, writes parity cases.

What it produces
----------------
Cases for `cargo xtask parity` in the fixture format of the public golden set (`NAME.json` +
`NAME.io.safetensors`, weight files `MODEL.weights.safetensors`, an `index.json`), covering the
`unaligned_face` task's face side:

* `retinaface_forward` (both backbones facexlib ships): the network's raw outputs, the prior
  boxes, every decoded box and landmark set, and `detect_faces`' result (threshold, sort, NMS).
  MobileNet-0.25 is the released architecture; ResNet-50 is torchvision's ResNet with fewer,
  narrower bottlenecks (the released one has 27 M parameters), the FPN/SSH/heads at a width
  above 64 so they take the same activation as the released model.
* `parsenet_forward`: facexlib's ParseNet at a tiny width.
* `face_helper_detect`: DiffBIR's `FaceRestoreHelper` (diffbir/utils/face.py) on a small photo
  as the `unaligned_face` loop drives it: `read_image` (the canvas upsized to a 512 short side),
  `get_face_landmarks_5(resize=640, eye_dist_threshold=5)` with a random-weight detector whose
  class bias is shifted so that a few boxes pass the 0.8 threshold, and `align_warp_face`.
* `face_align`: `align_warp_face` + `get_inverse_affine` for given landmarks on a real photo
  (OpenCV's estimateAffinePartial2D with LMEDS, warpAffine with the grey border).
* `face_paste_back`: `paste_faces_to_input_image` for given restored faces and a restored
  background of another size, with the parsing-net mask (a tiny ParseNet).
* `opencv_ops`: the OpenCV calls the helper makes, one by one, on small arrays.

Random weights: every parameter is drawn at random (batch-norm statistics included), so no
output is trivially zero. Each case seeds numpy and torch with the crc32 of its name.

Pinned reference
----------------
XPixelGroup/DiffBIR at REFERENCE_COMMIT (diffbir/utils/face.py is imported from the folder given
with `--diffbir`, a checkout or an export of that commit) and the PyPI packages pinned in
`requirements-face.txt` (facexlib 0.3.0, OpenCV 4.12, torch, torchvision). Nothing of either is
copied here.

How to run
----------
    python3 -m venv /tmp/venv-face
    /tmp/venv-face/bin/pip install -r xtask/reference/requirements-face.txt
    /tmp/venv-face/bin/pip install --no-deps facexlib==0.3.0
    /tmp/venv-face/bin/python xtask/reference/gen_face_cases.py \
        --diffbir /tmp/diffbir-src --images ../shared/images --out testing/fixtures/face
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from PIL import Image

REFERENCE_REPO = "XPixelGroup/DiffBIR"
REFERENCE_COMMIT = "3f8b5304245ba0ffd6f1995e51c27c3c72d7618f"
GENERATOR = "xtask/reference/gen_face_cases.py"
PHOTO = "real47/6.jpg"

FLOAT_TOL = {"rtol": 1e-4, "atol": 1e-4, "comment": "float32 forward pass"}


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


def import_face_helper(diffbir: Path):
    """Imports diffbir/utils/face.py as `diffbir.utils.face` without running diffbir/__init__."""
    for name, path in [("diffbir", diffbir / "diffbir"), ("diffbir.utils", diffbir / "diffbir" / "utils")]:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path)]
        sys.modules[name] = pkg
    spec = importlib.util.spec_from_file_location("diffbir.utils.face", diffbir / "diffbir/utils/face.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["diffbir.utils.face"] = module
    spec.loader.exec_module(module)
    return module


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Draws every parameter and batch-norm statistic at random (seeded by the caller)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.6, 1.4)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.6, 1.4)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.05)
    return model.eval()


def retinaface(network_name: str, backbone: dict | None, in_channel: int, out_channel: int):
    """facexlib's RetinaFace; for resnet50, torchvision's ResNet with the given layout."""
    from facexlib.detection import retinaface as rf
    from torchvision.models.resnet import Bottleneck, ResNet

    original_config = rf.generate_config
    original_resnet50 = torchvision.models.resnet50

    def config(name):
        cfg = dict(original_config(name))
        cfg["in_channel"], cfg["out_channel"] = in_channel, out_channel
        return cfg

    def resnet50(pretrained=False):
        class Block(Bottleneck):
            expansion = backbone["expansion"]

        return ResNet(Block, backbone["layers"], width_per_group=backbone["width_per_group"])

    rf.generate_config = config
    torchvision.models.resnet50 = resnet50
    try:
        model = rf.RetinaFace(network_name=network_name, half=False, device="cpu")
    finally:
        rf.generate_config = original_config
        torchvision.models.resnet50 = original_resnet50
    return randomize(model)


def parsenet(**kwargs):
    from facexlib.parsing.parsenet import ParseNet

    return randomize(ParseNet(**kwargs))


# --------------------------------------------------------------------------------------------
# Writing


class Writer:
    def __init__(self, out: Path):
        self.out = out
        self.cases: dict = {}
        self.weight_files: dict = {}
        out.mkdir(parents=True, exist_ok=True)

    def weights(self, file: str, model: torch.nn.Module, model_id: str, cls: str, config: dict) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(self.out / file))
        self.weight_files[file] = {"model": model_id, "class": cls, "config": config}

    def case(self, name: str, j: dict, tensors: dict) -> None:
        from safetensors.numpy import save_file

        arrays = {}
        for k, v in tensors.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().numpy()
            arrays[k] = np.ascontiguousarray(v)
        for k, v in arrays.items():
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                sys.exit(f"{name}: {k} has non-finite values")
        j = dict(j)
        j.update(
            {
                "case": name,
                "set": "generated",
                "reference_commit": REFERENCE_COMMIT,
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
                "implementation": "DiffBIR's face helper (release v2.1) on facexlib and OpenCV",
                "repository": REFERENCE_REPO,
                "reference_commit": REFERENCE_COMMIT,
                "generator": GENERATOR,
                **versions,
                "device": "cpu",
                "dtype": "float32",
            },
        }
        (self.out / "index.json").write_text(compact_json(index))


# --------------------------------------------------------------------------------------------
# Cases

RETINAFACE_VARIANTS = {
    "mobilenet0.25": {
        "network_name": "mobile0.25",
        "backbone": None,
        "in_channel": 32,
        "out_channel": 64,
        "summary": "RetinaFace, MobileNet-0.25 backbone (the released architecture)",
    },
    "resnet50_narrow": {
        "network_name": "resnet50",
        "backbone": {"layers": [1, 2, 1, 1], "width_per_group": 16, "expansion": 1},
        "in_channel": 64,
        "out_channel": 72,
        "summary": "RetinaFace, ResNet backbone (torchvision Bottleneck ResNet, 1-2-1-1 blocks, "
        "expansion 1, width 16 per group), FPN/SSH width 72",
    },
}


def photo(images: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    img = Image.open(images / PHOTO).convert("RGB")
    if size is not None:
        img = img.resize(size, Image.BICUBIC)
    return np.array(img)


def calibrate_heads(model, image: np.ndarray) -> None:
    """Scales every head's 1x1 convolution so that its outputs on `image` have a moderate
    spread (random weights through a deep backbone saturate the softmax and the box exp)."""
    x = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)).unsqueeze(0) - model.mean_tensor
    targets = {"ClassHead": 1.5, "BboxHead": 0.8, "LandmarkHead": 3.0}
    outputs = {}
    hooks = [
        head.conv1x1.register_forward_hook(lambda m, i, o, key=(kind, k): outputs.__setitem__(key, o))
        for kind in targets
        for k, head in enumerate(getattr(model, kind))
    ]
    with torch.no_grad():
        model(x)
        for (kind, k), out in outputs.items():
            conv = getattr(model, kind)[k].conv1x1
            factor = targets[kind] / float(out.std())
            conv.weight.mul_(factor)
            conv.bias.mul_(factor)
    for h in hooks:
        h.remove()


def largest_gap(values: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """Among the descending-sorted `values`, the count `n` in [lo, hi] whose gap between the
    n-th and (n+1)-th value is largest, and the midpoint of that gap."""
    v = np.sort(values)[::-1]
    n = max(range(lo, hi + 1), key=lambda n: v[n - 1] - v[n])
    return n, float((v[n - 1] + v[n]) / 2)


def shift_class_bias(model, image: np.ndarray, threshold: float) -> list[float]:
    """Moves the class-1 bias of each head so that a few large priors (levels 2 and 3) score
    above `threshold` on `image`, with a clear margin, and no small one (level 1) does;
    returns the shifts per level."""
    x = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)).unsqueeze(0) - model.mean_tensor
    with torch.no_grad():
        _, conf, _ = model(x)
    logits = (torch.log(conf[0, :, 1]) - torch.log(conf[0, :, 0])).numpy()
    h, w = image.shape[:2]
    level1 = 2 * int(np.ceil(h / 8)) * int(np.ceil(w / 8))
    _, mid = largest_gap(logits[level1:], 5, 10)
    need = float(np.log(threshold / (1 - threshold)))
    shifts = [-20.0, need - mid, need - mid]
    with torch.no_grad():
        for head, shift in zip(model.ClassHead, shifts):
            head.conv1x1.bias[1::2] += shift
    return shifts


def detections_threshold(scores: np.ndarray) -> float:
    """A score threshold in the middle of the largest gap that keeps 8 to 30 boxes."""
    return largest_gap(scores, 8, 30)[1]


DETECT_PHOTO_SIZE = (150, 116)


class Detector:
    """One random-weight RetinaFace per variant, shared by its cases: its heads calibrated and
    its class bias shifted on the detection image of `face_helper_detect` (see there)."""

    def __init__(self, w: Writer, images: Path, face_mod, key: str):
        v = RETINAFACE_VARIANTS[key]
        self.key = key
        seed_all(f"retinaface_{key}")
        self.model = retinaface(v["network_name"], v["backbone"], v["in_channel"], v["out_channel"])
        self.config = {k: v[k] for k in ("network_name", "backbone", "in_channel", "out_channel")}
        self.summary = v["summary"]
        helper = helper_with(face_mod, detector=self.model)
        helper.read_image(photo(images, DETECT_PHOTO_SIZE))
        h, wd = helper.input_img.shape[:2]
        scale = max(1, 640 / min(h, wd))
        det_input = cv2.resize(helper.input_img, (int(wd * scale), int(h * scale)),
                               interpolation=cv2.INTER_LINEAR)
        calibrate_heads(self.model, det_input)
        self.shifts = shift_class_bias(self.model, det_input, 0.8)
        self.weights = f"retinaface_{key.replace('.', '')}.weights.safetensors"
        w.weights(self.weights, self.model, f"retinaface_{key}", "facexlib.detection.retinaface.RetinaFace",
                  {**self.config, "class_bias_shifts": self.shifts})


def case_retinaface(w: Writer, images: Path, det: Detector) -> None:
    name = f"retinaface_{det.key.replace('.', '')}"
    model, config, weights = det.model, det.config, det.weights
    v = {"summary": det.summary}

    from facexlib.detection.retinaface_utils import PriorBox, decode, decode_landm

    # An odd-sized crop of a real photo: feature maps of ceil(H/step) and the FPN's nearest
    # upsampling to uneven sizes.
    image = photo(images, (97, 75))
    x = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)).unsqueeze(0) - model.mean_tensor
    with torch.no_grad():
        loc, conf, landms = model(x)
        priors = PriorBox(model.cfg, image_size=x.shape[2:]).forward()
        h, wd = x.shape[2:]
        boxes = decode(loc[0], priors, model.cfg["variance"]) * torch.tensor([wd, h, wd, h], dtype=torch.float32)
        marks = decode_landm(landms[0], priors, model.cfg["variance"]) * torch.tensor([wd, h] * 5, dtype=torch.float32)
    threshold = detections_threshold(conf[0, :, 1].numpy())
    with torch.no_grad():
        dets = model.detect_faces(image, conf_threshold=threshold, nms_threshold=0.4)
    w.case(
        name,
        {
            "builder": "retinaface_forward",
            "summary": v["summary"] + ", raw outputs, priors, decoding and detect_faces",
            "module": "RetinaFace",
            "module_class": "facexlib.detection.retinaface.RetinaFace",
            "config": config,
            "weights": [{"file": weights, "module_path": ""}],
            "mode": "eval",
            "call": "detect_faces",
            "conf_threshold": threshold,
            "nms_threshold": 0.4,
            "inputs": {"input.image": "HWC uint8 image as given to detect_faces (RGB, as DiffBIR passes it)"},
            "outputs": {
                "output.loc": "[1, P, 4] box regressions of model(image - (104, 117, 123))",
                "output.conf": "[1, P, 2] softmaxed class scores",
                "output.landmarks": "[1, P, 10] landmark regressions",
                "output.priors": "[P, 4] PriorBox (cx, cy, w, h) relative to the image",
                "output.boxes": "[P, 4] decoded boxes in pixels (x1, y1, x2, y2)",
                "output.points": "[P, 10] decoded landmarks in pixels",
                "output.detections": "[N, 15] detect_faces: box, score, 5 landmarks; score > conf_threshold, "
                "sorted by score, torchvision NMS at nms_threshold",
            },
            "tolerance": dict(FLOAT_TOL),
        },
        {
            "input.image": image,
            "output.loc": loc,
            "output.conf": conf,
            "output.landmarks": landms,
            "output.priors": priors,
            "output.boxes": boxes,
            "output.points": marks,
            "output.detections": dets.astype(np.float32),
        },
    )


def case_parsenet(w: Writer) -> None:
    name = "parsenet_tiny"
    seed_all(name)
    config = {"in_size": 64, "out_size": 64, "min_feat_size": 16, "base_ch": 8, "parsing_ch": 19,
              "res_depth": 2, "relu_type": "LeakyReLU", "norm_type": "bn", "ch_range": [8, 16]}
    model = parsenet(**config)
    weights = f"{name}.weights.safetensors"
    w.weights(weights, model, name, "facexlib.parsing.parsenet.ParseNet", config)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        mask, img = model(x)
    w.case(
        name,
        {
            "builder": "parsenet_forward",
            "summary": "ParseNet (facexlib, from PSFRGAN) at a tiny width: the channel clip and both heads",
            "module": "ParseNet",
            "module_class": "facexlib.parsing.parsenet.ParseNet",
            "config": config,
            "weights": [{"file": weights, "module_path": ""}],
            "mode": "eval",
            "call": "out_mask, out_img = model(x)",
            "inputs": {"input.x": "NCHW, normalised to [-1, 1]"},
            "outputs": {"output.mask": "[1, 19, H, W] parsing logits", "output.img": "[1, 3, H, W]"},
            "tolerance": dict(FLOAT_TOL),
        },
        {"input.x": x, "output.mask": mask, "output.img": img},
    )


def helper_with(face_mod, detector=None, parser=None, face_size=512, use_parse=True):
    """A FaceRestoreHelper whose models are the given random-weight ones (no downloads)."""
    saved = face_mod.init_detection_model, face_mod.init_parsing_model
    face_mod.init_detection_model = lambda *a, **k: detector
    face_mod.init_parsing_model = lambda *a, **k: parser
    try:
        return face_mod.FaceRestoreHelper(
            upscale_factor=1, face_size=face_size, use_parse=use_parse, det_model="retinaface_resnet50",
            device=torch.device("cpu"))
    finally:
        face_mod.init_detection_model, face_mod.init_parsing_model = saved


def case_helper_detect(w: Writer, images: Path, face_mod, det: Detector, options: dict, suffix: str) -> None:
    name = f"face_helper_detect_{suffix}"
    model, config, weights = det.model, det.config, det.weights
    image = photo(images, DETECT_PHOTO_SIZE)
    helper = helper_with(face_mod, detector=model)
    helper.read_image(image)
    h, wd = helper.input_img.shape[:2]
    scale = max(1, 640 / min(h, wd))
    det_input = cv2.resize(helper.input_img, (int(wd * scale), int(h * scale)), interpolation=cv2.INTER_LINEAR)
    with torch.no_grad():
        raw = model.detect_faces(det_input)
    n = helper.get_face_landmarks_5(resize=640, eye_dist_threshold=5, **options)
    helper.align_warp_face()
    helper.get_inverse_affine()
    faces = np.stack(helper.cropped_faces) if helper.cropped_faces else np.zeros((0, 512, 512, 3), np.uint8)
    w.case(
        name,
        {
            "builder": "face_helper_detect",
            "summary": "FaceRestoreHelper.read_image + get_face_landmarks_5(resize=640, eye_dist_threshold=5"
            + "".join(f", {k}={v}" for k, v in options.items())
            + ") + align_warp_face, random-weight detector",
            "module": "FaceRestoreHelper",
            "module_class": "diffbir.utils.face.FaceRestoreHelper",
            "config": config,
            "helper": {"upscale_factor": 1, "face_size": 512, "det_model": "retinaface_resnet50",
                       "resize": 640, "eye_dist_threshold": 5, **options},
            "weights": [{"file": weights, "module_path": ""}],
            "mode": "eval",
            "call": "helper.read_image(image); helper.get_face_landmarks_5(...); helper.align_warp_face()",
            "result": {"faces": int(n)},
            "inputs": {"input.image": "HWC uint8 RGB"},
            "outputs": {
                "output.input_img": "the helper's canvas after read_image (short side upsized to 512)",
                "output.raw_detections": "[N, 15] detect_faces on the 640-short-side detection image",
                "output.landmarks": "[F, 5, 2] kept landmarks (divided by the detection scale)",
                "output.det_faces": "[F, 5] kept boxes and scores",
                "output.affine": "[F, 2, 3] float64, estimateAffinePartial2D(landmarks, template, LMEDS)",
                "output.inverse_affine": "[F, 2, 3] float64, invertAffineTransform",
                "output.cropped_faces": "[F, 512, 512, 3] uint8 warpAffine crops",
            },
            "tolerance": {"rtol": 1e-4, "atol": 1e-3,
                          "comment": "float32 detector: the landmarks, hence the matrices, carry its rounding "
                          "(~1e-5 px); the random-weight landmarks zoom the crops several times, so that noise "
                          "moves some samples by one 1/32-px step of warpAffine's grid: a few levels on edges "
                          "(the warp itself is exact, see face_align)",
                          "outputs": {"output.cropped_faces": {"atol": 8},
                                      "output.input_img": {"exact": True}}},
        },
        {
            "input.image": image,
            "output.input_img": helper.input_img,
            "output.raw_detections": raw.astype(np.float32),
            "output.landmarks": np.array(helper.all_landmarks_5, dtype=np.float32).reshape(-1, 5, 2),
            "output.det_faces": np.array(helper.det_faces, dtype=np.float32).reshape(-1, 5),
            "output.affine": np.array(helper.affine_matrices, dtype=np.float64).reshape(-1, 2, 3),
            "output.inverse_affine": np.array(helper.inverse_affine_matrices, dtype=np.float64).reshape(-1, 2, 3),
            "output.cropped_faces": faces,
        },
    )


def plausible_landmarks(rng, template: np.ndarray, centre, size: float, angle: float, noise: float):
    """The template moved to `centre`, scaled so the face spans about `size` px, rotated by
    `angle` degrees, with Gaussian noise of `noise` px per coordinate."""
    t = template - template.mean(0)
    s = size / 512.0
    c, sn = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rot = np.array([[c, -sn], [sn, c]])
    pts = (t @ rot.T) * s + np.asarray(centre)
    return (pts + rng.normal(0, noise, pts.shape)).astype(np.float32)


def case_align(w: Writer, images: Path, face_mod) -> None:
    name = "face_align"
    rng = seed_all(name)
    image = photo(images)
    h, wd = image.shape[:2]
    helper = helper_with(face_mod, face_size=256, use_parse=False)
    template = helper.face_template
    landmarks = [
        plausible_landmarks(rng, template * 2, (wd * 0.5, h * 0.45), 180, 8, 0.8),
        plausible_landmarks(rng, template * 2, (wd * 0.3, h * 0.5), 90, -25, 2.5),
        plausible_landmarks(rng, template * 2, (wd * 0.05, h * 0.1), 140, 40, 1.0),  # partly outside
        plausible_landmarks(rng, template * 2, (wd * 0.7, h * 0.6), 60, 170, 0.3),  # upside down
    ]
    outlier = plausible_landmarks(rng, template * 2, (wd * 0.6, h * 0.3), 120, 0, 0.5)
    outlier[2] += np.array([25.0, -30.0], dtype=np.float32)  # one landmark far off: LMEDS drops it
    landmarks.append(outlier)
    helper.read_image(image)
    scale = helper.input_img.shape[0] / h
    helper.all_landmarks_5 = [lm * np.float32(scale) for lm in landmarks]
    helper.align_warp_face()
    helper.get_inverse_affine()
    w.case(
        name,
        {
            "builder": "face_align",
            "summary": "FaceRestoreHelper.align_warp_face + get_inverse_affine for given landmarks "
            "(face_size 256): estimateAffinePartial2D LMEDS, warpAffine with the grey border",
            "module": "FaceRestoreHelper",
            "module_class": "diffbir.utils.face.FaceRestoreHelper",
            "helper": {"upscale_factor": 1, "face_size": 256},
            "call": "helper.read_image(image); helper.all_landmarks_5 = landmarks; helper.align_warp_face(); "
            "helper.get_inverse_affine()",
            "inputs": {"input.image": "HWC uint8 RGB (a real photo)",
                       "input.landmarks": "[F, 5, 2] float32 landmarks in the canvas' pixels"},
            "outputs": {
                "output.input_img": "the canvas after read_image",
                "output.template": "[5, 2] the helper's face template at face_size",
                "output.affine": "[F, 2, 3] float64",
                "output.inverse_affine": "[F, 2, 3] float64 (invertAffineTransform)",
                "output.cropped_faces": "[F, 256, 256, 3] uint8",
            },
            "notes": ["face 2 lies partly outside the image (grey border (135, 133, 132)); face 3 is upside "
                      "down; face 4 has one landmark 39 px off, which LMEDS treats as an outlier."],
            "tolerance": {"rtol": 1e-5, "atol": 1e-5,
                          "outputs": {"output.cropped_faces": {"atol": 1}, "output.input_img": {"exact": True}}},
        },
        {
            "input.image": image,
            "input.landmarks": np.stack(helper.all_landmarks_5).astype(np.float32),
            "output.input_img": helper.input_img,
            "output.template": np.asarray(template, dtype=np.float64),
            "output.affine": np.stack(helper.affine_matrices).astype(np.float64),
            "output.inverse_affine": np.stack(helper.inverse_affine_matrices).astype(np.float64),
            "output.cropped_faces": np.stack(helper.cropped_faces),
        },
    )


def smooth_image(rng, h: int, w: int) -> np.ndarray:
    """A smooth random uint8 RGB image (low-frequency noise upsampled)."""
    small = rng.uniform(0, 255, (max(2, h // 32), max(2, w // 32), 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def case_paste_back(w: Writer, images: Path, face_mod, use_parse: bool) -> None:
    name = "face_paste_back" if use_parse else "face_paste_back_square"
    rng = seed_all(name)
    config = {"in_size": 512, "out_size": 512, "min_feat_size": 32, "base_ch": 4, "parsing_ch": 19,
              "res_depth": 1, "relu_type": "LeakyReLU", "norm_type": "bn", "ch_range": [4, 8]}
    parser = parsenet(**config)
    # A parsing net at random weights labels almost everything one class; spread the classes
    # over the face so that both the masked (0) and kept (255) labels occur.
    with torch.no_grad():
        parser.out_mask_conv.conv2d.bias.copy_(torch.linspace(-1.0, 1.0, 19))
    weights = f"{name}.parsenet.weights.safetensors"
    if use_parse:
        w.weights(weights, parser, "parsenet_tiny512", "facexlib.parsing.parsenet.ParseNet", config)
    image = photo(images, (200, 160))
    helper = helper_with(face_mod, parser=parser, face_size=512, use_parse=use_parse)
    helper.read_image(image)
    h, wd = helper.input_img.shape[:2]
    template = helper.face_template
    landmarks = [
        plausible_landmarks(rng, template, (wd * 0.4, h * 0.45), 260, 12, 0.5),
        plausible_landmarks(rng, template, (wd * 0.75, h * 0.6), 150, -20, 0.5),
    ][: 2 if use_parse else 1]
    helper.all_landmarks_5 = landmarks
    helper.align_warp_face()
    helper.get_inverse_affine()
    restored = [smooth_image(rng, 512, 512) for _ in landmarks]
    background = smooth_image(rng, h - 37, wd - 29)  # another size: LANCZOS4 resize to the canvas
    for face in restored:
        helper.add_restored_face(face)
    result = helper.paste_faces_to_input_image(upsample_img=background)
    w.case(
        name,
        {
            "builder": "face_paste_back",
            "summary": ("FaceRestoreHelper.paste_faces_to_input_image with the parsing mask (tiny ParseNet "
                        "at 512), two faces, a restored background of another size" if use_parse else
                        "FaceRestoreHelper.paste_faces_to_input_image without the parsing mask (use_parse=False: "
                        "the eroded and blurred square alone, float32), one face"),
            "module": "FaceRestoreHelper",
            "module_class": "diffbir.utils.face.FaceRestoreHelper",
            "config": config,
            "helper": {"upscale_factor": 1, "face_size": 512, "use_parse": use_parse},
            "weights": [{"file": weights, "module_path": ""}] if use_parse else [],
            "call": "helper.get_inverse_affine(); add_restored_face(...); "
            "paste_faces_to_input_image(upsample_img=background)",
            "inputs": {
                "input.canvas_size": "[2] (h, w) of the helper's canvas",
                "input.affine": "[F, 2, 3] float64 affine matrices of the faces",
                "input.restored_faces": "[F, 512, 512, 3] uint8",
                "input.background": "HWC uint8 restored background",
            },
            "outputs": {"output.image": "HWC uint8 result"},
            "tolerance": {"atol": 1, "comment": "uint8; one level where a float product rounds across .0",
                          "outputs": {"output.image": {"atol": 1}}},
        },
        {
            "input.canvas_size": np.array([h, wd], dtype=np.int64),
            "input.affine": np.stack(helper.affine_matrices).astype(np.float64),
            "input.restored_faces": np.stack(restored),
            "input.background": background,
            "output.image": result,
        },
    )


def case_opencv_ops(w: Writer) -> None:
    name = "opencv_ops"
    rng = seed_all(name)
    t: dict = {}
    u8 = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    t["input.u8"] = u8
    for k, (ww, hh) in {"up": (57, 40), "down": (17, 11), "same": (31, 23)}.items():
        t[f"output.resize_linear_{k}"] = cv2.resize(u8, (ww, hh), interpolation=cv2.INTER_LINEAR)
        t[f"output.resize_lanczos4_{k}"] = cv2.resize(u8, (ww, hh), interpolation=cv2.INTER_LANCZOS4)
    t["output.resize_linear_fx"] = cv2.resize(u8, (0, 0), fx=512 / 23, fy=512 / 23, interpolation=cv2.INTER_LINEAR)
    f32 = rng.uniform(0, 1, (41, 37)).astype(np.float32)
    f64 = rng.uniform(0, 255, (41, 37))
    t["input.f32"], t["input.f64"] = f32, f64
    for k in (1, 3, 5, 7, 9, 13, 31):
        t[f"output.gaussian_f32_k{k}"] = cv2.GaussianBlur(f32, (k, k), 0)
    t["output.gaussian_f64_k21_s3"] = cv2.GaussianBlur(f64, (21, 21), 3)
    big = np.zeros((128, 128))
    big[20:100, 30:90] = 255.0
    t["input.f64_big"] = big
    t["output.gaussian_f64_k101_s11"] = cv2.GaussianBlur(big, (101, 101), 11)
    for k in (2, 3, 6):
        t[f"output.erode_f32_k{k}"] = cv2.erode(f32, np.ones((k, k), np.uint8))
    m = np.array([[0.83, -0.21, 4.7], [0.23, 0.79, -3.1]])
    t["input.affine"] = m
    t["output.warp_u8"] = cv2.warpAffine(u8, m, (29, 27), borderMode=cv2.BORDER_CONSTANT, borderValue=(135, 133, 132))
    t["output.warp_u8_black"] = cv2.warpAffine(u8, m, (29, 27))
    t["output.warp_f32"] = cv2.warpAffine(f32, m, (35, 30))
    t["output.warp_f64_area"] = cv2.warpAffine(f64, m, (35, 30), flags=3)
    t["output.inverse_affine"] = cv2.invertAffineTransform(m)
    w.case(
        name,
        {
            "builder": "opencv_ops",
            "summary": "the OpenCV calls of the face helper on small arrays: resize (linear, lanczos4; uint8), "
            "GaussianBlur (float32, float64), erode (float32), warpAffine (uint8, float32, float64), "
            "invertAffineTransform",
            "call": "see `ops`",
            "ops": {
                "resize_linear_{up,down,same}": "cv2.resize(u8, (w, h), INTER_LINEAR) to the output's size",
                "resize_lanczos4_{up,down,same}": "cv2.resize(u8, (w, h), INTER_LANCZOS4)",
                "resize_linear_fx": "cv2.resize(u8, (0, 0), fx=512/23, fy=512/23, INTER_LINEAR)",
                "gaussian_f32_kK": "cv2.GaussianBlur(f32, (K, K), 0)",
                "gaussian_f64_k21_s3": "cv2.GaussianBlur(f64, (21, 21), 3)",
                "gaussian_f64_k101_s11": "cv2.GaussianBlur(f64_big, (101, 101), 11)",
                "erode_f32_kK": "cv2.erode(f32, ones((K, K), uint8))",
                "warp_u8": "cv2.warpAffine(u8, affine, (29, 27), BORDER_CONSTANT, (135, 133, 132))",
                "warp_u8_black": "cv2.warpAffine(u8, affine, (29, 27))",
                "warp_f32": "cv2.warpAffine(f32, affine, (35, 30))",
                "warp_f64_area": "cv2.warpAffine(f64, affine, (35, 30), flags=3 (INTER_AREA))",
                "inverse_affine": "cv2.invertAffineTransform(affine)",
            },
            "inputs": {"input.*": "the arrays the ops read"},
            "outputs": {"output.*": "one per op (uint8 results exactly)"},
            "tolerance": {"rtol": 1e-5, "atol": 1e-5,
                          "outputs": {k: {"exact": True} for k, v in t.items()
                                      if k.startswith("output.") and v.dtype == np.uint8}},
        },
        t,
    )


def write_manifests(out: Path) -> None:
    """Key manifests of the released models (every state_dict key with shape, dtype and kind),
    for `cargo xtask fake-checkpoint` and the loading tests: RetinaFace on the real
    torchvision ResNet-50 and on MobileNet-0.25, ParseNet at 512."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.parsenet import ParseNet

    dest = out / "manifests"
    dest.mkdir(parents=True, exist_ok=True)
    models = {
        "retinaface_resnet50": (RetinaFace(network_name="resnet50", half=False, device="cpu"),
                                "facexlib.detection.retinaface.RetinaFace", {"network_name": "resnet50"},
                                "detection_Resnet50_Final.pth"),
        "retinaface_mobilenet025": (RetinaFace(network_name="mobile0.25", half=False, device="cpu"),
                                    "facexlib.detection.retinaface.RetinaFace", {"network_name": "mobile0.25"},
                                    "detection_mobilenet0.25_Final.pth"),
        "parsenet": (ParseNet(in_size=512, out_size=512, parsing_ch=19), "facexlib.parsing.parsenet.ParseNet",
                     {"in_size": 512, "out_size": 512, "parsing_ch": 19}, "parsing_parsenet.pth"),
    }
    for name, (model, cls, config, file_name) in models.items():
        params = dict(model.named_parameters())
        keys = [{"key": k, "checkpoint_key": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                 "kind": "parameter" if k in params else "buffer"} for k, v in model.state_dict().items()]
        (dest / f"{name}.json").write_text(compact_json({
            "model": name,
            "module_class": cls,
            "config": config,
            "released_file": file_name,
            "checkpoint_key_prefix": "",
            "num_parameters": sum(p.numel() for p in params.values()),
            "num_keys": len(keys),
            "keys": keys,
        }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffbir", type=Path, required=True, help="DiffBIR checkout at the pinned commit")
    ap.add_argument("--images", type=Path, required=True, help="the shared images folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import facexlib
    face_mod = import_face_helper(args.diffbir)
    w = Writer(args.out)
    write_manifests(args.out)
    case_opencv_ops(w)
    detectors = {key: Detector(w, args.images, face_mod, key) for key in RETINAFACE_VARIANTS}
    for det in detectors.values():
        case_retinaface(w, args.images, det)
    case_parsenet(w)
    case_helper_detect(w, args.images, face_mod, detectors["mobilenet0.25"], {}, "all")
    case_helper_detect(w, args.images, face_mod, detectors["resnet50_narrow"], {"only_center_face": True}, "center")
    case_align(w, args.images, face_mod)
    case_paste_back(w, args.images, face_mod, use_parse=True)
    case_paste_back(w, args.images, face_mod, use_parse=False)
    w.index({
        "torch_version": torch.__version__.split("+")[0],
        "torchvision_version": torchvision.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "opencv_version": cv2.__version__,
        "facexlib_version": facexlib.__version__,
    })


if __name__ == "__main__":
    main()
