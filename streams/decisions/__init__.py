"""From closed windows to verdicts, per function: windows (:mod:`.windows`), detection
and its typed proposals (:mod:`.detection`, :mod:`.proposal`), the Rego policy engine
(:mod:`.policy`), the verdict lifecycle (:mod:`.lifecycle`), the decision step that
runs them in order (:mod:`.step`), live thresholds (:mod:`.thresholds`), function
profiles and spend (:mod:`.profiles`) and saved state (:mod:`.snapshots`).

Pure and clock-free: no I/O besides reading snapshots at start, and every entry point
takes ``now_ns``. May import :mod:`streams.paging`, :mod:`streams.detectors` and below.
"""
