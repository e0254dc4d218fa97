"""clipcrop: aesthetic crop suggestions for photo libraries.

Data flows one way: file -> image (:mod:`clipcrop_plugin.imaging`) -> candidates
(:mod:`clipcrop_plugin.candidates`) -> scorer (:mod:`clipcrop_plugin.scoring`) -> store
(:mod:`clipcrop_plugin.store`) -> metadata (:mod:`clipcrop_plugin.xmp`).
"""

__version__ = "0.1.0"
