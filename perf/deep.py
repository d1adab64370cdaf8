"""Deep-model speed, measured side by side in one process.

1. training throughput of the harness (`fit`: images read from the image cache, augmented, trained)
   against a bare PyTorch loop over the same network, optimizer and batch size on tensors already
   in memory (target >= 0.95);
2. inference FPS of the harness (`predict_proba` on decoded arrays at their full 350x230 size, so
   resizing counts) against a bare forward of the same network on ready tensors (target: within 5%),
   their passes alternating;
3. Fast BCNN FPS / BCNN FPS through the harness, same backbone and input size (target >= 1.8);
4. the probe's embedding throughput (`Embedder.embed` on stored images: read, resized, normalised,
   forwarded) against a bare timm forward of the same model on ready tensors (target >= 0.95), and
   the speed-up of a rerun that finds every embedding in the cache;
5. peak memory of the process.

Defaults are the `quick` recipe's sizes (96 px, batch 32) and a few batches, so the script takes a
few minutes on a 2-core CPU. Each throughput is the best of its repeats: on a shared machine that is
the least disturbed one. Run: python perf/deep.py [--input-size 224 --batch-size 16
--bilinear-dim 0] (the paper's sizes and full 2048x2048 bilinear features); `--probe-only` times
the probe rows alone.
"""

from __future__ import annotations

import argparse
import os
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
from bhbench_baselines.deep.recipes import Recipe
from bhbench_baselines.probe.embed import Embedder

IMAGE_SHAPE = (230, 350, 3)  # the synthetic default's size


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Deep-model speed: harness against bare PyTorch")
    p.add_argument("--method", default="fast_bcnn", help="a Fast BCNN method; its BCNN twin is timed too")
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bilinear-dim", type=int, default=None, help="default: the recipe's; 0: no reduction")
    p.add_argument("--batches", type=int, default=4, help="training batches per epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per repeat")
    p.add_argument("--fps-images", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--probe-model", default="resnet18", help="timm model for the probe rows (random weights)")
    p.add_argument("--probe-images", type=int, default=64)
    p.add_argument("--probe-only", action="store_true", help="time the probe rows alone")
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


def bare_training(args: argparse.Namespace, net: torch.nn.Module, recipe: Recipe) -> float:
    """The same network, optimizer and batch size on tensors already in memory."""
    device = next(net.parameters()).device
    net.train()
    opt = training.make_optimizer(net, recipe)
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


def harness_fps(method: Method, arrays: list[np.ndarray]) -> float:
    """One timed pass of `predict_proba` over the arrays (a warm-up call first)."""
    method.predict_proba(TestSet.build("binary", images=arrays[:2]))
    t0 = time.perf_counter()
    method.predict_proba(TestSet.build("binary", images=arrays))
    return len(arrays) / (time.perf_counter() - t0)


def bare_fps(net: torch.nn.Module, args: argparse.Namespace) -> float:
    """One timed pass of the bare forward over as many ready images (a warm-up call first)."""
    device = next(net.parameters()).device
    net.eval()
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=device)
    n = args.fps_images
    with torch.inference_mode():
        net(x[:2])
        t0 = time.perf_counter()
        for start in range(0, n, args.batch_size):
            net(x[: min(args.batch_size, n - start)])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t0)


def inference(
    method: Method, twin: Method, net: torch.nn.Module, args: argparse.Namespace, arrays: list[np.ndarray]
) -> tuple[float, float, float]:
    """Best FPS of the harness, the bare forward and the twin, their passes alternating so that a
    neighbour's load burst on a shared machine hits all three alike."""
    harness = bare = twin_fps = 0.0
    for _ in range(args.repeats):
        harness = max(harness, harness_fps(method, arrays))
        bare = max(bare, bare_fps(net, args))
        twin_fps = max(twin_fps, harness_fps(twin, arrays))
    return harness, bare, twin_fps


def probe_rows(args: argparse.Namespace, root: Path) -> list[tuple[str, float, float, str]]:
    """Embedding images/s of the probe against a bare forward, and a cached rerun against the first run."""
    root.mkdir(parents=True, exist_ok=True)
    embedder = Embedder(args.probe_model, "random", {}, args.device, args.batch_size)
    size = embedder.inputs.size
    train = stored_train_set(args.probe_images, root, size)
    n = len(train)
    x = torch.randn(args.batch_size, 3, size, size, device=embedder.device)
    bare, first, rerun = 0.0, 0.0, 0.0
    with torch.inference_mode():
        embedder.model(x[:2])  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for start in range(0, n, args.batch_size):
                embedder.model(x[: min(args.batch_size, n - start)])
            bare = max(bare, n / (time.perf_counter() - t0))
    for repeat in range(args.repeats):
        os.environ["BHBENCH_CACHE"] = str(root / f"cache{repeat}")  # an empty embedding cache each time
        t0 = time.perf_counter()
        assert embedder.embed(train).computed == n
        first = max(first, n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        assert embedder.embed(train).computed == 0
        rerun = max(rerun, n / (time.perf_counter() - t0))
    return [
        (f"probe embeddings/s (vs bare {args.probe_model})", first, bare, ">= 0.95"),
        ("probe cached rerun (vs first run)", rerun, first, "speed-up"),
    ]


def print_rows(rows: list[tuple[str, float, float, str]]) -> None:
    print(f"{'':<40}{'harness':>9}{'reference':>11}{'ratio':>9}  target")
    for label, mine, reference, target in rows:
        print(f"{label:<40}{mine:>9.1f}{reference:>11.1f}{mine / reference:>9.2f}  {target}")


def main() -> None:
    args = parse_args()
    registry.discover()
    if args.probe_only:
        with tempfile.TemporaryDirectory() as tmp:
            rows = probe_rows(args, Path(tmp))
        threads = torch.get_num_threads()
        print(f"\n{args.probe_model}, {args.probe_images} images, batch {args.batch_size}, {threads} threads")
        print_rows(rows)
        return
    twin_name = args.method.replace("fast_bcnn", "bcnn")
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8) for _ in range(args.fps_images)]
    with tempfile.TemporaryDirectory() as tmp:
        train = stored_train_set(args.batch_size * args.batches, Path(tmp), args.input_size)
        harness_train, method = harness_training(args, train)
        twin = create(twin_name, args, epochs=0).fit(train)  # untrained: only its speed matters
        probes = probe_rows(args, Path(tmp) / "probe")
    info = method.fit_info()
    device = training.resolve_device(args.device)
    recipe, _ = training.resolve_recipe(method, device)
    torch.manual_seed(0)
    bare_net = method.build_network(2, recipe).to(device)
    bare_train = bare_training(args, bare_net, recipe)
    harness, bare, twin_fps = inference(method, twin, bare_net, args, arrays)

    print(
        f"\n{args.method} ({info['backbone']}, bilinear_dim {info['bilinear_dim']}) at "
        f"{info['input_size']}x{info['input_size']}, batch {args.batch_size}, {device.type}, "
        f"{torch.get_num_threads()} threads; training on {args.batches} batches x {args.epochs} epochs "
        f"x {args.repeats} repeats, FPS over {args.fps_images} images of {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]}"
    )
    print(f"parameters: {args.method} {info['parameters']:,}, {twin_name} {twin.fit_info()['parameters']:,}")
    print_rows(
        [
            ("training images/s (vs bare loop)", harness_train, bare_train, ">= 0.95"),
            ("inference FPS (vs bare forward)", harness, bare, ">= 0.95"),
            (f"FPS {args.method} (vs {twin_name})", harness, twin_fps, ">= 1.8"),
            *probes,
        ]
    )
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
