"""Errors of the simulator and of the ``hopscope simulate`` command::

    HopscopeError                      (hopscope.core.errors)
    └── SimulatorError
        └── ExportIncompleteError      the export pipeline did not deliver everything emitted

Bad configuration values are ``ValueError`` (raised by :class:`SimulationConfig`), naming the
parameter and the rule, as for any constructor.
"""

from hopscope.core.errors import HopscopeError


class SimulatorError(HopscopeError):
    """Base class of the simulator's errors."""


class ExportIncompleteError(SimulatorError):
    """The export pipeline did not deliver all the spans and logs the simulation emitted.

    The ground truth counts what was emitted; with records missing downstream, a check of the
    stored counts against it would fail, so the command says so instead of succeeding.
    """
