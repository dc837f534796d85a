"""``governor gate``: the policy bundle evaluated on deployment manifests before a
deploy (stage ``pre-commit`` or ``pre-deploy``), with a monthly cost prediction
learned from the history in ClickHouse.

One module per job: :mod:`~streams.gate.manifests` (readers) → :mod:`~streams.gate.spec`
(one typed function spec) → :mod:`~streams.gate.diff` (against a git base) →
:mod:`~streams.gate.history` and :mod:`~streams.gate.predict` (the prediction) →
:mod:`~streams.gate.evaluate` (the policies) → :mod:`~streams.gate.formats` (table,
JSON, SARIF, JUnit) and :mod:`~streams.gate.store` (history in, decisions out);
:mod:`~streams.gate.run` ties them together.
"""
