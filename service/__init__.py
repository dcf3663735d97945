"""Serving side of zooserve. Never imports torch or `training`: it reads only the files in `models/`."""

__version__ = "0.1.0"
