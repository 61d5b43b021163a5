"""FIX 4.4 connectivity: pure message codecs and an asyncio bridge around the QuickFIX engine.

Importing ``quickfix`` resets the process's SIGINT disposition to ``SIG_DFL`` (its SWIG module
init does so), which makes Ctrl-C kill the process without running any ``finally`` block. This
package restores Python's own SIGINT handler right after that import, so engines started from
here can always be stopped cleanly.
"""

import signal
import threading

import quickfix  # noqa: F401  # imported first so its SIGINT reset happens before the repair


def _restore_python_sigint() -> None:
    """Reinstall the SIGINT handler Python believes is active, undoing quickfix's reset."""
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signal.SIGINT)
    if handler is not None:
        signal.signal(signal.SIGINT, handler)


_restore_python_sigint()
