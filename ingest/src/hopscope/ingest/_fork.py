"""What survives ``os.fork()``: objects that hold threads, locks or connections reset themselves
in the child, so a pre-fork server's workers (gunicorn ``--preload``, uWSGI) keep exporting."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any


def reset_in_forked_child(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in the child of every later ``os.fork()``.

    Held through a weak reference, so registering never keeps its object alive (an object
    collected before the fork is simply skipped). Where the platform cannot fork, nothing.
    """
    if not hasattr(os, "register_at_fork"):
        return
    weak = weakref.WeakMethod(method)

    def after_in_child() -> None:
        if (bound := weak()) is not None:
            bound()

    os.register_at_fork(after_in_child=after_in_child)
