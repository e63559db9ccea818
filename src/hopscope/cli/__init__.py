"""The ``hopscope`` command line: thin commands that call the library and print its results.

One module per command group (``stack``, ``simulate``, ``process``, ``analyze``, ``kibana``,
``demo``); :mod:`hopscope.cli.app` is the root that registers them. The CLI is the only layer
that may import every other one.
"""

from hopscope.cli.app import __version__, app, main

__all__ = ["__version__", "app", "main"]
