"""Accuracy against airtime, per SNR, for analog and digital links on the bundled model.

The bundled ViT (``vit_fmnist_patch4_28``, its shipped weights) runs split at block 3 on the first
``--images`` Fashion-MNIST test images, for two schedules (unmerged, and ToMe's constant r = 2 in the
first three blocks, which sends 44 instead of 50 tokens). The edge's tokens cross each link at
each SNR (Es/N0, dB; one seeded draw), the server finishes, and top-1 accuracy is reported beside
the link's airtime for one image: the analog links' channel uses (fixed by the tokens,
``paretoctl.channel_sim.packing.channel_uses``) and the digital links' expected channel uses at that
SNR (``bits / R`` times ``1 / (1 - P_out)`` when lost blocks are resent,
``paretoctl.service.link``); the milliseconds are at the default profile's 1e6 symbols per second,
without the link overhead. Prints a markdown table to stdout.

Usage:
    .venv/bin/python bench/digital_link.py [--images 500] [--snrs 0 5 10 15 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from paretoctl.channel_sim import make_channel
from paretoctl.channel_sim.packing import channel_uses
from paretoctl.models.data import load_fmnist
from paretoctl.models.loading import ModelSpec, create_model
from paretoctl.models.patch import apply_merging, set_schedule
from paretoctl.models.split import TokenState, edge_forward, server_forward
from paretoctl.service.link import link_from_channel, payload_bits

SPLIT = 3
SYMBOL_RATE_HZ = 1e6
LINKS: list[tuple[str, str, dict[str, object]]] = [
    ("analog AWGN", "awgn", {}),
    ("analog Rayleigh, per token, MMSE", "rayleigh", {"block": "token", "equaliser": "mmse"}),
    ("digital AWGN, 4 bits", "awgn", {"link": "digital", "bits": 4}),
    ("digital AWGN, 8 bits", "awgn", {"link": "digital", "bits": 8}),
    ("digital Rayleigh, 6 bits, resend", "rayleigh", {"link": "digital", "bits": 6}),
    ("digital Rayleigh, 6 bits, lost -> mean", "rayleigh", {"link": "digital", "bits": 6, "on_loss": "mean"}),
]
SCHEDULES: dict[str, list[int]] = {"unmerged": [0] * 12, "r=2 in blocks 0-2": [2, 2, 2] + [0] * 9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, 5.0, 10.0, 15.0, 20.0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = apply_merging(create_model(ModelSpec()))
    test = load_fmnist().test
    images, labels = test.tensors[0][: args.images], test.tensors[1][: args.images]
    dim, patches = int(model.embed_dim), int(model.patch_embed.num_patches)
    t0 = time.perf_counter()
    print(f"{len(images)} Fashion-MNIST test images, bundled model, split {SPLIT}, one seeded draw per SNR; "
          f"airtime per image in channel uses (ms at {SYMBOL_RATE_HZ:g} symbols/s, no overhead)\n")
    print("| schedule | link | " + " | ".join(f"{s:g} dB: acc / uses (ms)" for s in args.snrs) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.snrs) + " |")
    with torch.inference_mode():
        for sname, r in SCHEDULES.items():
            set_schedule(model, r)
            state = edge_forward(model, images, SPLIT)
            clean = float((server_forward(model, state, SPLIT).argmax(-1) == labels).float().mean())
            n_tokens = state.tokens.shape[1]
            print(f"| {sname} ({n_tokens} tokens) | none (clean) | "
                  + " | ".join(f"{100 * clean:.1f} %" for _ in args.snrs) + " |")
            for lname, kind, params in LINKS:
                channel = make_channel(kind, **params)
                link = link_from_channel(kind, params)
                cells = []
                for k, snr in enumerate(args.snrs):
                    gen = torch.Generator().manual_seed(1000 + k)
                    rx = channel(state.tokens, snr, generator=gen)
                    acc = float((server_forward(model, TokenState(rx, state.size, None), SPLIT).argmax(-1)
                                 == labels).float().mean())
                    uses = (channel_uses(n_tokens, dim) if link is None else
                            link.airtime_uses(payload_bits(n_tokens, dim, link.bits, patches), snr))
                    cells.append(f"{100 * acc:.1f} % / {uses:,.0f} ({1000 * uses / SYMBOL_RATE_HZ:.1f})")
                print(f"| {sname} | {lname} | " + " | ".join(cells) + " |")
    print(f"\nwall {time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
