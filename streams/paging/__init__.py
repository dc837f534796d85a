"""On-call: one incident per function and episode (:mod:`.incidents`, pure), the
places pages go (:mod:`.transports`: Alertmanager, PagerDuty, a file) and their
delivery with queues and retries (:mod:`.dispatch`).

Imports only settings and errors below it.
"""
