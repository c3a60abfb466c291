"""paretoctl's policy service and the pure-Python pieces it shares with the SDK and the CLI.

* :mod:`paretoctl.service.schema`: the front artifact (models, checksum, atomic dump, strict load);
* :mod:`paretoctl.service.latency`: device profiles and the latency model;
* :mod:`paretoctl.service.policy`: ``select(front, snr_db, latency_ms)``, the one selection rule;
* :mod:`paretoctl.service.app`: the FastAPI app (``create_app``), with :mod:`paretoctl.service.settings`,
  :mod:`paretoctl.service.metrics` and the ``/policy`` fast path in :mod:`paretoctl.service.fastpath`.

Nothing here imports torch. Importing this package imports none of its modules.
"""
