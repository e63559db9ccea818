"""The lab's errors::

HopscopeError                      (hopscope.core.errors)
└── LabError
    ├── MissingToolError           a program the lab needs is not installed
    └── LabNotRunningError         ``lab run``/``down`` without a running lab
"""

from __future__ import annotations

from hopscope.core.errors import HopscopeError


class LabError(HopscopeError):
    """The reference payment system could not be started, driven or stopped."""


class MissingToolError(LabError):
    """A program the lab needs (Postgres, Redis, stress-ng, the Collector) is missing."""


class LabNotRunningError(LabError):
    """No lab state in the state directory."""
