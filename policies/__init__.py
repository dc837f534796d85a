"""The Rego policy bundle Governor ships (see ``README.md`` beside this file).

Installed with the package, so a worker finds it without a checkout; it is the
default of ``GOVERNOR_POLICY_DIR``, which points a worker at your own bundle instead.
"""

from pathlib import Path

POLICY_DIR = Path(__file__).parent
"""The directory of the shipped ``*.rego`` policies and their ``*.json`` data."""
