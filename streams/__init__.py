"""Governor's stream workers, decisions, ClickHouse sink and the ``governor`` CLI.

Build a worker's app with :func:`streams.app.create_app`; settings come from
:class:`streams.settings.Settings`.
"""
