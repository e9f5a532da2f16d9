"""hfc_edu: adversarial attacks on medical image classifiers, their detection, and HFC.

The companion library of the hfc-edu book. Start every notebook with::

    import hfc_edu
    cfg = hfc_edu.setup(seed=0)
"""

from hfc_edu.config import Config, Profile, get_profile, setup

__version__ = "0.1.0"

__all__ = ["Config", "Profile", "__version__", "get_profile", "setup"]
