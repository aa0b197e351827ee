"""PyTorch's side of `cargo bench -p diffbir-core --bench kernels`: `F.conv2d` on the same
shapes (3x3 or 1x1, stride 1, padding k // 2, with bias), min of 10 runs after 3 warm-ups.

    target/bench-venv/bin/python xtask/torch/conv_shapes.py [THREADS]
"""

import sys
import time

import torch

# (name, batch, cin, cout, side, kernel): the SHAPES of diffbir-core/benches/kernels.rs.
SHAPES = [
    ("unet-320", 1, 320, 320, 64, 3),
    ("unet-640", 1, 640, 640, 32, 3),
    ("unet-1280", 1, 1280, 1280, 16, 3),
    ("unet-1280-8", 1, 1280, 1280, 8, 3),
    ("unet-1x1-320", 1, 320, 320, 64, 1),
    ("vae-128", 1, 128, 128, 256, 3),
    ("vae-512", 1, 512, 512, 64, 3),
    ("swinir-180", 1, 180, 180, 64, 3),
    ("rrdb-64", 1, 64, 32, 128, 3),
]


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    with torch.inference_mode():
        for name, batch, cin, cout, side, k in SHAPES:
            x = torch.randn(batch, cin, side, side)
            w = torch.randn(cout, cin, k, k)
            b = torch.randn(cout)
            for _ in range(3):
                torch.nn.functional.conv2d(x, w, b, padding=k // 2)
            times = []
            for _ in range(10):
                t = time.perf_counter()
                torch.nn.functional.conv2d(x, w, b, padding=k // 2)
                times.append(time.perf_counter() - t)
            flops = 2 * batch * cout * cin * k * k * side * side
            print(f"{name:14s} {min(times) * 1e3:8.2f} ms {flops / min(times) / 1e9:7.1f} GFLOP/s")


if __name__ == "__main__":
    main()
