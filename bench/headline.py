"""The headline figure from a built front: the largest FLOPs reduction that keeps top-SNR accuracy.

For each channel, among the front's configurations whose accuracy at the top grid SNR is within
0.5 points of the unmerged model's, the largest FLOPs reduction. Selection uses the validation split;
the test-split accuracy of the selected configuration is what is reported. Run:

    python bench/headline.py runs/default/front.json [--tolerance 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paretoctl.service.schema import load_front


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("front", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.5, help="allowed accuracy drop, in points")
    args = ap.parse_args()
    front = load_front(args.front)
    ref = front.config(front.reference_config_id)
    top = len(front.provenance.snr_grid_db) - 1
    snr = front.provenance.snr_grid_db[top]
    print(f"\n## Headline: largest FLOPs reduction within {args.tolerance} points at {snr:g} dB\n")
    print("| channel | config | FLOPs reduction | tokens sent | val acc (unmerged) | test acc (unmerged) | "
          "test drop (points) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for ch in front.provenance.channel_kinds:
        ref_val = ref.accuracy_val[ch][top].mean
        ok = [c for c in front.configs if c.accuracy_val[ch][top].mean >= ref_val - args.tolerance / 100]
        best = min(ok, key=lambda c: c.gflops.total)
        red = 1 - best.gflops.total / ref.gflops.total
        t, tr = best.accuracy_test[ch][top], ref.accuracy_test[ch][top]
        print(f"| {ch} | {best.id} | {100 * red:.1f}% | {best.tokens_sent} / {ref.tokens_sent} | "
              f"{100 * best.accuracy_val[ch][top].mean:.2f}% ({100 * ref_val:.2f}%) | "
              f"{100 * t.mean:.2f}% ± {100 * t.stderr:.2f} ({100 * tr.mean:.2f}%) | {100 * (tr.mean - t.mean):.2f} |")


if __name__ == "__main__":
    main()
