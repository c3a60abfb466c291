"""paretoctl's policy service and the pure-Python pieces it shares with the SDK and the CLI.

* :mod:`service.schema`: the front artifact (models, checksum, atomic dump, strict load);
* :mod:`service.latency`: device profiles and the latency model;
* :mod:`service.policy`: ``select(front, snr_db, latency_ms)``, the one selection rule;
* :mod:`service.app`: the FastAPI app (``create_app``), with :mod:`service.settings`,
  :mod:`service.metrics` and the ``/policy`` fast path in :mod:`service.fastpath`.

Nothing here imports torch. Importing this package imports none of its modules.
"""
