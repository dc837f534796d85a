"""On-call: one incident per function and episode (:mod:`.incidents`, pure) and its
delivery to Alertmanager, PagerDuty or a file with retries (:mod:`.dispatch`).

Imports only settings and errors below it.
"""
