"""The embedded stack on one machine: the Tansu broker (:mod:`.broker`), a broker and a
worker process for the demo and benchmarks (:mod:`.embedded`), the stack file
(:mod:`.stackfile`) and ``governor query`` (:mod:`.query`).

May import :mod:`streams.storage` and below; production layers above use only the
stack file.
"""
