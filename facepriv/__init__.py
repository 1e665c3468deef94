"""facepriv: find faces in images, videos and camera feeds and hide them.

Importing the package stays light (no TensorFlow, no OpenCV): heavy libraries are
imported by the nodes that need them.
"""

__version__ = "0.1.0"

from facepriv.errors import ConfigError, FaceprivError, MediaError  # noqa: E402

__all__ = ["ConfigError", "FaceprivError", "MediaError", "__version__"]
