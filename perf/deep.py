"""Deep-model speed, measured side by side in one process.

1. training throughput of the harness (`fit`: images read from the image cache, augmented, trained)
   against a bare PyTorch loop over the same network, optimizer and batch size on tensors already
   in memory (target >= 0.95);
2. inference FPS of the harness (`predict_proba` on decoded arrays at their full 350x230 size, so
   resizing counts) against a bare forward of the same network on ready tensors (target: within 10%);
3. Fast BCNN FPS / BCNN FPS through the harness, same backbone and input size (target >= 1.8);
4. peak memory of the process.

Defaults are the `quick` profile's sizes (96 px, batch 32) and a few batches, so the script takes a
few minutes on a 2-core CPU. Each throughput is the best of its repeats: on a shared machine that is
the least disturbed one. Run: python perf/deep.py [--input-size 224 --batch-size 16
--bilinear-dim 0] (the paper's sizes and full 2048x2048 bilinear features).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bhbench import Method, TestSet, TrainSet, registry
from bhbench.data.images import ImageStore
from bhbench.method import TrainMeta
from bhbench_baselines.deep import training
from bhbench_baselines.deep.profiles import Profile

IMAGE_SHAPE = (230, 350, 3)  # the synthetic default's size


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Deep-model speed: harness against bare PyTorch")
    p.add_argument("--method", default="fast_bcnn", help="a Fast BCNN method; its BCNN twin is timed too")
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bilinear-dim", type=int, default=None, help="default: the profile's; 0: no reduction")
    p.add_argument("--batches", type=int, default=4, help="training batches per epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat")
    p.add_argument("--fps-images", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p.parse_args()


def stored_train_set(n: int, root: Path, size: int) -> TrainSet:
    """n random images staged in an image cache as the harness stages them, resized copies warm."""
    rng = np.random.default_rng(0)
    store = ImageStore(root / "images")
    items = []
    for i in range(n):
        path = root / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8))
        items.append((f"{i:032x}", path))
    store.ensure(items)
    y = np.arange(n) % 2
    # A single patient: no inner validation, so every timed second of an epoch is training.
    meta = TrainMeta(y, y > 0, np.array(["A"] * n), np.full(n, 40), np.array(["p0"] * n))
    train = TrainSet.build("binary", meta, keys=[k for k, _ in items], store=str(store.root))
    train.batch(range(n), (size, size))  # after a run's first epoch the cache holds these
    return train


def create(name: str, args: argparse.Namespace, epochs: int) -> Method:
    return registry.create(
        name,
        epochs=epochs,
        batch_size=args.batch_size,
        input_size=args.input_size,
        bilinear_dim=args.bilinear_dim,
        device=args.device,
    )


def harness_training(args: argparse.Namespace, train: TrainSet) -> tuple[float, Method]:
    """Best images/s over all timed epochs, and the last fitted method."""
    best, method = 0.0, None
    for _ in range(args.repeats):
        method = create(args.method, args, args.epochs).fit(train)
        for epoch in method.fit_info()["history"]:
            best = max(best, epoch["train_images"] / epoch["train_seconds"])
    assert method is not None
    return best, method


def bare_training(args: argparse.Namespace, net: torch.nn.Module, profile: Profile) -> float:
    """The same network, optimizer and batch size on tensors already in memory."""
    device = next(net.parameters()).device
    net.train()
    opt = training.make_optimizer(net, profile)
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=device)
    y = torch.randint(0, 2, (args.batch_size,), device=device)
    best = 0.0
    for _ in range(args.repeats * args.epochs):
        t0 = time.perf_counter()
        for _ in range(args.batches):
            loss = F.cross_entropy(net(x)["class"], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        best = max(best, args.batches * args.batch_size / (time.perf_counter() - t0))
    return best


def harness_fps(method: Method, arrays: list[np.ndarray], repeats: int) -> float:
    method.predict_proba(TestSet.build("binary", images=arrays[:2]))  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        method.predict_proba(TestSet.build("binary", images=arrays))
        best = max(best, len(arrays) / (time.perf_counter() - t0))
    return best


def bare_fps(net: torch.nn.Module, args: argparse.Namespace) -> float:
    device = next(net.parameters()).device
    net.eval()
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=device)
    n = args.fps_images
    best = 0.0
    with torch.inference_mode():
        net(x[:2])  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for start in range(0, n, args.batch_size):
                net(x[: min(args.batch_size, n - start)])
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    args = parse_args()
    registry.discover()
    twin_name = args.method.replace("fast_bcnn", "bcnn")
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8) for _ in range(args.fps_images)]
    with tempfile.TemporaryDirectory() as tmp:
        train = stored_train_set(args.batch_size * args.batches, Path(tmp), args.input_size)
        harness_train, method = harness_training(args, train)
        twin = create(twin_name, args, epochs=0).fit(train)  # untrained: only its speed matters
    info = method.fit_info()
    device = training.resolve_device(args.device)
    profile, _ = training.resolve_profile(method, device)
    torch.manual_seed(0)
    bare_net = method.build_network(2, profile).to(device)
    bare_train = bare_training(args, bare_net, profile)
    harness = harness_fps(method, arrays, args.repeats)
    bare = bare_fps(bare_net, args)
    twin_fps = harness_fps(twin, arrays, args.repeats)

    print(
        f"\n{args.method} ({info['backbone']}, bilinear_dim {info['bilinear_dim']}) at "
        f"{info['input_size']}x{info['input_size']}, batch {args.batch_size}, {device.type}, "
        f"{torch.get_num_threads()} threads; training on {args.batches} batches x {args.epochs} epochs "
        f"x {args.repeats} repeats, FPS over {args.fps_images} images of {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]}"
    )
    print(f"parameters: {args.method} {info['parameters']:,}, {twin_name} {twin.fit_info()['parameters']:,}")
    print(f"{'':<34}{'harness':>9}{'reference':>11}{'ratio':>7}  target")
    rows = [
        ("training images/s (vs bare loop)", harness_train, bare_train, ">= 0.95"),
        ("inference FPS (vs bare forward)", harness, bare, ">= 0.90"),
        (f"FPS {args.method} (vs {twin_name})", harness, twin_fps, ">= 1.8"),
    ]
    for label, mine, reference, target in rows:
        print(f"{label:<34}{mine:>9.1f}{reference:>11.1f}{mine / reference:>7.2f}  {target}")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
