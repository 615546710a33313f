"""DANCE (Zhang et al., IJCAI 2024) as a condensekit method plugin: ``condensekit distill dance``.

condensekit finds the method through the ``condensekit.methods`` entry point ``dance``; the
import below is for library use (``from condensekit_dance import DANCE``).
"""

from condensekit_dance.method import DANCE, DANCEConfig

__version__ = "0.1.0"
__all__ = ["DANCE", "DANCEConfig", "__version__"]
