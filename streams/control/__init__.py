"""The control topic: live thresholds as workers follow them (:mod:`.follower`) and the
operator commands that set, undo and audit them or issue manual verdicts (:mod:`.commands`).

May import :mod:`streams.decisions` (thresholds, the verdict issuer) and below.
"""
