"""Liu et al.'s ablation, the cost side: parameters and inference speed of the base model, BCNN and
Fast BCNN for each of their three backbones (InceptionV3, ResNet50, InceptionResNetV2), measured
side by side in one process on one device.

Each network is the one bhbench trains (`build_network` of the registered method), with random
weights (speed does not depend on them). FPS is the best of `--repeats` timed forward passes over one
batch of ready tensors, the networks' passes alternating so that a disturbance of the machine falls on
all of them alike. Printed per backbone: parameters, FPS, FPS relative to the base model, and
Fast BCNN FPS / BCNN FPS (Liu et al. report Fast BCNN about twice as fast as BCNN).

Defaults are the paper recipe's sizes (224 px, full 2048x2048 bilinear features); `--recipe quick`
times the CPU smoke recipe's networks (96 px, bilinear features reduced to 128 channels). Run:
python perf/liu_ablation.py [--recipe quick] [--device auto|cpu|cuda] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from bhbench import registry
from bhbench_baselines.deep.methods import BackboneMethod
from bhbench_baselines.deep.training import resolve_device

BACKBONES = ("inception_v3", "resnet50", "inception_resnet_v2")
HEADS = ("", "_bcnn", "_fast_bcnn")  # base model (global average pool + linear), BCNN, Fast BCNN


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Liu et al.'s ablation: parameters and FPS, side by side")
    p.add_argument("--recipe", choices=["paper", "quick"], default="paper")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def network(name: str, recipe_name: str, device: torch.device) -> torch.nn.Module:
    """The registered method's network for two classes, random weights, in eval mode."""
    method = registry.create(name, weights="random", recipe=recipe_name)
    assert isinstance(method, BackboneMethod)
    recipe = getattr(method, f"{recipe_name}_recipe")
    net = method.build_network(2, replace(recipe, needs_imagenet=False))
    return net.to(device).eval()


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    names = [f"{b}{h}" for b in BACKBONES for h in HEADS]
    nets = {n: network(n, args.recipe, device) for n in names}
    size = getattr(BackboneMethod, f"{args.recipe}_recipe").input_size  # every Liu network's recipe
    x = torch.randn(args.batch_size, 3, size, size, device=device)
    fps = dict.fromkeys(names, 0.0)
    with torch.inference_mode():
        for net in nets.values():  # warm-up: first-call allocations are not timed
            net(x)
        for _ in range(args.repeats):
            for name, net in nets.items():
                t0 = time.perf_counter()
                net(x)["class"].sum().item()
                fps[name] = max(fps[name], args.batch_size / (time.perf_counter() - t0))
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    setup = f"{size}x{size} input, batch {args.batch_size}, {device}{threads}"
    print(f"recipe {args.recipe}: {setup}; best of {args.repeats} passes")
    print(f"{'network':32} {'parameters':>12} {'FPS':>8} {'x base':>8}")
    for backbone in BACKBONES:
        base = fps[backbone]
        for head in HEADS:
            name = f"{backbone}{head}"
            params = sum(p.numel() for p in nets[name].parameters())
            print(f"{name:32} {params / 1e6:>11.1f}M {fps[name]:>8.1f} {fps[name] / base:>8.2f}")
        ratio = fps[f"{backbone}_fast_bcnn"] / fps[f"{backbone}_bcnn"]
        print(f"{'':32} Fast BCNN FPS / BCNN FPS = {ratio:.2f} (Liu et al.: about 2)")


if __name__ == "__main__":
    main()
