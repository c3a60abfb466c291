"""Does a configuration's schedule agree with itself? ``r``, ``proportions``, ``tokens_per_layer``, ``tokens_sent``.

A front records the same schedule four ways; if they disagree, a device would apply one schedule
(``r``) while the service promised the accuracy and cost measured for another. The rules (token
counts include the prefix tokens, which are never merged):

* ``r == resolve_schedule(proportions, num_patches, depth)`` (``paretoctl.models.schedule``: the
  one mapping the build used; torch-free);
* ``tokens_per_layer[0] == num_patches + num_prefix_tokens`` and
  ``tokens_per_layer[l + 1] == tokens_per_layer[l] - r[l]`` (tokens *entering* each block);
* ``tokens_sent`` is the tokens entering block ``split_index``, or leaving the last block when
  ``split_index == depth`` (``tokens_per_layer[-1] - r[-1]``).

Lengths are checked by the caller before this runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paretoctl.models.schedule import resolve_schedule

if TYPE_CHECKING:
    from paretoctl.service.schema.models import FrontConfig, Provenance


def expected_tokens(r: list[int], num_patches: int, num_prefix_tokens: int) -> list[int]:
    """Tokens entering each block under ``r`` (prefix included): ``depth`` entries."""
    tokens = [num_patches + num_prefix_tokens]
    for r_l in r[:-1]:
        tokens.append(tokens[-1] - r_l)
    return tokens


def tokens_crossing(tokens_per_layer: list[int], r: list[int], split_index: int) -> int:
    """Tokens sent over the link: entering block ``split_index``, or leaving the last block."""
    if split_index < len(tokens_per_layer):
        return tokens_per_layer[split_index]
    return tokens_per_layer[-1] - r[-1]


def check_schedule(where: str, cfg: FrontConfig, prov: Provenance) -> None:
    """Raise ``ValueError`` naming ``where`` and the field when the four views of the schedule disagree.

    Args:
        where: how to name the configuration in the message, e.g. ``configs[3] (id 'cfg003')``.
        cfg: the configuration (``proportions``, ``r``, ``tokens_per_layer`` of length ``prov.depth``).
        prov: the front's provenance (``num_patches``, ``num_prefix_tokens``, ``depth``, ``split_index``).
    """
    try:
        want_r = resolve_schedule(cfg.proportions, prov.num_patches, prov.depth)
    except ValueError as exc:
        raise ValueError(f"{where}.proportions: {exc}") from None
    if list(cfg.r) != want_r:
        raise ValueError(f"{where}.r: {list(cfg.r)} is not the schedule its proportions give "
                         f"({want_r}, by resolve_schedule with num_patches {prov.num_patches})")
    want_tokens = expected_tokens(want_r, prov.num_patches, prov.num_prefix_tokens)
    if list(cfg.tokens_per_layer) != want_tokens:
        raise ValueError(f"{where}.tokens_per_layer: {list(cfg.tokens_per_layer)}, expected the tokens entering "
                         f"each block, prefix included: {want_tokens}")
    sent = tokens_crossing(want_tokens, want_r, prov.split_index)
    if cfg.tokens_sent != sent:
        at = (f"entering block {prov.split_index}" if prov.split_index < prov.depth
              else "leaving the last block")
        raise ValueError(f"{where}.tokens_sent: {cfg.tokens_sent}, expected {sent} (the tokens {at})")
