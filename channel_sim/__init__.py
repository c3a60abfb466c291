"""paretoctl: channel_sim, wireless channels for token tensors with stated, tested conventions.

See :mod:`paretoctl.channel_sim.channels` for the full statement of the conventions (packing, power, SNR,
fading, equalisation) and :mod:`paretoctl.channel_sim.theory` for the closed forms they are checked against.
Digital links (quantised tokens over a rate-limited, SNR-dependent link) are in
:mod:`paretoctl.channel_sim.digital`, their rate, outage and airtime in :mod:`paretoctl.service.link`.
"""

from paretoctl.channel_sim.channels import CHANNEL_KINDS, DIGITAL_KINDS, Channel, make_channel
from paretoctl.channel_sim.digital import DigitalChannel
from paretoctl.channel_sim.packing import channel_uses

__all__ = ["CHANNEL_KINDS", "DIGITAL_KINDS", "Channel", "DigitalChannel", "channel_uses", "make_channel"]
