"""Run a function in a forked child, as a pre-fork server's worker would, and read its report."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable


def in_forked_child(work: Callable[[], str]) -> tuple[int, str]:
    """Fork; the child runs ``work`` and writes its result on a pipe, then exits without ever
    returning into pytest. Returns the child's pid and report once it has exited 0."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, work().encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the forked child failed: {report!r}"
    return pid, report
