"""Simulators, apart from production code: a fleet of functions running through the
real agent (:mod:`.fleet`), labelled incident scenarios (:mod:`.scenarios`) and the
closed-loop demo (:mod:`.demo`). Nothing in production imports this package.
"""
