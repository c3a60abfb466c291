"""Common random numbers: a token sent from the same grid slot meets the same channel draws.

Two "schedules" send different numbers of tokens of the same image; the tokens they share sit on
the same slots of the unmerged grid. With ``positions`` the shared tokens must come out identical
(every kind, every block mode, both equalisers) when the symbols are identical, and their errors
must be perfectly correlated when only the power scale differs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from paretoctl.channel_sim.channels import make_channel
from paretoctl.models.loading import ModelSpec, create_model
from paretoctl.models.patch import apply_merging
from paretoctl.models.split import edge_forward

B, GRID, D = 3, 10, 8
KEPT = [0, 2, 3, 7, 9]  # slots the merged schedule still sends

CASES: list[tuple[str, dict[str, Any]]] = [
    ("awgn", {}),
    ("awgn", {"equaliser": "mmse"}),
    *[("rayleigh", {"block": blk, "equaliser": eq}) for blk in ("symbol", "token", "image", 3)
      for eq in ("zf", "mmse")],
    *[("rician", {"k_factor": 2.0, "block": blk, "los_phase": "random"}) for blk in ("symbol", "token", "image", 5)],
]


def _equal_energy_tokens() -> torch.Tensor:
    """``[B, GRID, D]`` tokens of equal norm, so any subset has the same RMS (the same power scale)."""
    t = torch.randn(B, GRID, D, generator=torch.Generator().manual_seed(1))
    return t / t.norm(dim=-1, keepdim=True) * 3.0


def _send(kind: str, params: dict[str, Any], tokens: torch.Tensor, slots: list[int], seed: int = 7,
          **kw: Any) -> torch.Tensor:
    ch = make_channel(kind, **params)
    pos = torch.tensor(slots).expand(tokens.shape[0], -1)
    sent = tokens[:, slots]
    extra = {"positions": pos, "grid_tokens": GRID} if kw.get("crn", True) else {}
    return ch(sent, 5.0, generator=torch.Generator().manual_seed(seed), **extra)


@pytest.mark.parametrize(("kind", "params"), CASES)
def test_shared_tokens_meet_identical_draws(kind: str, params: dict[str, Any]) -> None:
    tokens = _equal_energy_tokens()
    full = _send(kind, params, tokens, list(range(GRID)))
    merged = _send(kind, params, tokens, KEPT)
    # The same symbols meet the same draws: equal outputs, up to rounding in the two scales' sums.
    torch.testing.assert_close(merged, full[:, KEPT], rtol=1e-5, atol=1e-6)
    err_full = (full[:, KEPT] - tokens[:, KEPT]).flatten()
    err_merged = (merged - tokens[:, KEPT]).flatten()
    assert err_full.norm() > 0.1  # there is noise to share
    assert float(torch.corrcoef(torch.stack([err_full, err_merged]))[0, 1]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("kind", "params"), [c for c in CASES if c[1].get("equaliser", "zf") == "zf"])
def test_power_scale_only_rescales_the_shared_noise(kind: str, params: dict[str, Any]) -> None:
    # Unequal token energies: the two transmissions have different RMS, so the normalised symbols
    # differ by the ratio of scales; after zero-forcing the error is n / h times each scale, so the
    # errors on shared tokens are perfectly correlated and in the ratio of the scales.
    tokens = torch.randn(B, GRID, D, generator=torch.Generator().manual_seed(2)) * torch.linspace(0.5, 3, GRID)[:, None]
    full = _send(kind, params, tokens, list(range(GRID)))
    merged = _send(kind, params, tokens, KEPT)
    scale_full = tokens.reshape(B, -1).pow(2).mean(1).mul(2).sqrt()
    scale_kept = tokens[:, KEPT].reshape(B, -1).pow(2).mean(1).mul(2).sqrt()
    for b in range(B):
        e_full = (full[b, KEPT] - tokens[b, KEPT]).flatten()
        e_kept = (merged[b] - tokens[b, KEPT]).flatten()
        assert float(torch.corrcoef(torch.stack([e_full, e_kept]))[0, 1]) == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(e_kept, e_full * (scale_kept[b] / scale_full[b]), rtol=1e-4, atol=1e-5)


def test_without_positions_the_draws_depend_on_the_token_count() -> None:
    # The old behaviour this replaces: one noise tensor shaped by the number of tokens sent, so the
    # second image of the batch meets other noise as soon as the schedules differ.
    tokens = _equal_energy_tokens()
    full = _send("awgn", {}, tokens, list(range(GRID)), crn=False)
    merged = _send("awgn", {}, tokens, KEPT, crn=False)
    assert not torch.allclose(full[1, KEPT], merged[1], atol=1e-3)


def test_positions_are_checked() -> None:
    ch = make_channel("awgn")
    t = torch.zeros(1, 3, D)
    with pytest.raises(ValueError, match="distinct"):
        ch(t, 0.0, positions=torch.tensor([[0, 1, 1]]), grid_tokens=5)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        ch(t, 0.0, positions=torch.tensor([[0, 1, 5]]), grid_tokens=5)
    with pytest.raises(ValueError, match="grid_tokens"):
        ch(t, 0.0, positions=torch.tensor([[0, 1, 2]]), grid_tokens=2)
    with pytest.raises(ValueError, match="even D"):
        ch(torch.zeros(1, 3, 5), 0.0, positions=torch.tensor([[0, 1, 2]]), grid_tokens=5)


def test_a_merged_schedule_of_a_real_model_shares_the_noise_of_its_unmerged_slots() -> None:
    # The evaluator's slot rule on test_vit: a token's slot is its first source token; the tokens a
    # merge leaves alone keep their own slot, so they meet the unmerged run's noise exactly.
    model = create_model(ModelSpec("test_vit"))
    images = torch.randn(2, 3, *model.patch_embed.img_size, generator=torch.Generator().manual_seed(0))
    grid = model.patch_embed.num_patches + model.num_prefix_tokens
    out = {}
    for name, r in (("unmerged", [0] * len(model.blocks)), ("merged", [8] + [0] * (len(model.blocks) - 1))):
        apply_merging(model, r, trace_source=True)
        st = edge_forward(model, images, 1)
        assert st.source is not None
        pos = st.source.argmax(-1)
        ch = make_channel("rayleigh", block="token")
        rx = ch(st.tokens, 8.0, generator=torch.Generator().manual_seed(3), positions=pos, grid_tokens=grid)
        out[name] = (st, pos, (rx - st.tokens) / st.tokens.reshape(2, -1).pow(2).mean(1).mul(2).sqrt()[:, None, None])
    (s0, _, n0), (s1, p1, n1) = out["unmerged"], out["merged"]
    alone = s1.source.sum(-1) == 1  # tokens that still hold one source: sent unchanged by both
    assert int(alone.sum()) > 0 and 0 < int((~alone).sum()) <= 2 * 8  # 8 merges per image, some into one token
    for b in range(2):
        for j in torch.nonzero(alone[b]).flatten().tolist():
            slot = int(p1[b, j])
            torch.testing.assert_close(s1.tokens[b, j], s0.tokens[b, slot])  # identical symbols...
            torch.testing.assert_close(n1[b, j], n0[b, slot], rtol=1e-4, atol=1e-5)  # ...identical noise
