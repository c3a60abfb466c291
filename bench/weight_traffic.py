"""Why halving the tokens barely shortens the bundled model's batch-1 forward: the weights' trip to the core.

At batch 1 the bundled ViT's linear layers see 10-50 tokens, and its 48 linear layers hold 6.0 MiB of
fp32 weights, more than this machine's 2 MiB of L2 per core. Inside a forward pass each layer's
weights may thus have to come from L3 or memory, while a microbenchmark that calls one layer in a
loop finds them in cache. This benchmark times the same ``F.linear`` shapes both ways, interleaved, medians:

* **hot**: the first block's four matrices, in the same order of shapes (they stay in cache, as in
  a microbenchmark);
* **cycled**: the model's own 48 weight matrices in forward order (block by block: qkv, proj, fc1,
  fc2), as a forward pass meets them, each called once per pass.

It prints the per-call time of both, for a merged-size (12 tokens) and an unmerged (50 tokens) input.
If the cycled 12-token call costs much more than the hot one and about what a cycled 50-token call
costs, then at batch 1 time goes to moving weights, which token merging cannot reduce.

    python bench/weight_traffic.py [--rounds 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=50, help="passes over the 48 layers per timed round")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from paretoctl.models.loading import ModelSpec, create_model
    from paretoctl.models.timing import cpu_model

    torch.set_num_threads(args.threads)
    model = create_model(ModelSpec("bundled"))
    layers = [(m.weight.detach(), m.bias.detach()) for m in model.blocks.modules() if isinstance(m, torch.nn.Linear)]
    mbytes = sum(w.numel() + b.numel() for w, b in layers) * 4 / 2**20
    rng = torch.Generator().manual_seed(0)
    inputs = {(m, k): torch.randn(m, k, generator=rng) for m in (12, 50) for k in {w.shape[1] for w, _ in layers}}

    # the same shapes in the same order, but always the first block's four matrices (0.5 MiB: they stay in L2)
    first_block = layers[:4]
    hot_layers = [next(fb for fb in first_block if fb[0].shape == w.shape) for w, _ in layers]

    def per_call_us(weights: list[tuple[torch.Tensor, torch.Tensor]], tokens: int) -> float:
        """Microseconds per ``F.linear`` call over ``passes`` passes through ``weights`` in order."""
        t0 = time.perf_counter()
        for _ in range(args.passes):
            for w, b in weights:
                F.linear(inputs[(tokens, w.shape[1])], w, b)
        return (time.perf_counter() - t0) / (args.passes * len(weights)) * 1e6

    cases = {f"{kind} {tokens} tokens": (weights, tokens) for kind, weights in (("hot", hot_layers), ("cycled", layers))
             for tokens in (12, 50)}
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.inference_mode():
        for weights, tokens in cases.values():
            per_call_us(weights, tokens)  # warm-up
        for _ in range(args.rounds):
            for name, (weights, tokens) in cases.items():
                times[name].append(per_call_us(weights, tokens))
    med = {name: statistics.median(v) for name, v in times.items()}
    load = os.getloadavg()[0]
    print(f"`python bench/weight_traffic.py --rounds {args.rounds} --threads {args.threads}`")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {cpu_model()}; {len(layers)} linear layers, "
          f"{mbytes:.1f} MiB of weights; {args.rounds} interleaved rounds of {args.passes} passes, medians; "
          f"load average {load:.2f} at the end\n")
    print("| weights | us per call, 12 tokens | us per call, 50 tokens | 12 / 50 tokens |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ("hot", "cycled"):
        a, b = med[f"{kind} 12 tokens"], med[f"{kind} 50 tokens"]
        print(f"| {kind} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    print(f"\ncycled / hot: {med['cycled 12 tokens'] / med['hot 12 tokens']:.2f}x at 12 tokens, "
          f"{med['cycled 50 tokens'] / med['hot 50 tokens']:.2f}x at 50 tokens")


if __name__ == "__main__":
    main()
