"""Governor's stream workers, decisions, ClickHouse sink and the ``governor`` CLI.

Subpackages by job (see ``docs/architecture.md`` for the data path and the layers):
:mod:`.pipeline` (the worker's Faust app and routes), :mod:`.control` (the control
topic), :mod:`.decisions` (windows → proposals → policies → verdicts),
:mod:`.paging` (incidents and pagers), :mod:`.storage` (ClickHouse), :mod:`.ops` (the
embedded stack), :mod:`.detectors`; apart from production code, :mod:`.sim` and
:mod:`.bench`. Settings come from :class:`streams.settings.Settings`.
"""
