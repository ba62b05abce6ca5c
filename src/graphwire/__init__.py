"""graphwire: stream a living 3D knowledge-graph layout to browsers and Python programs."""

__version__ = "0.1.0"
