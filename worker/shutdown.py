"""A bounded way out: whatever the worker is doing when it heads for the exit, the
process ends within `--shutdown-timeout-s` (30 s by default).

The first SIGTERM or SIGINT asks the worker to finish the batch in hand, publish every
pending user, commit and close (`Worker.stop`), and arms a deadline; a stall or an
error arms it as the worker unwinds (`Worker(on_leaving=...)`). If the process is
still there when the deadline passes (a drain, commit or close blocked on a broker
that is gone, a long restore, a join the broker holds, a thread that does not end),
`ExitGuard` logs what it abandoned and exits at once: EXIT_STALLED after a stall,
EXIT_ABANDONED otherwise. A second signal exits at once (128 + its number). Nothing
is committed on the way out that the commit protocol had not allowed: a hard exit
commits nothing, and the next owner of the partitions replays from the last commit.

Signals are handled on a thread of their own (`forward_signals`): Python runs a
signal handler only when the main thread comes back to the interpreter, which a
blocked Kafka client call (librdkafka closing a consumer mid-join, say) may not do for
minutes. The C-level handler writes every signal to a wakeup pipe at once, whatever
the main thread is doing, and the thread reads it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

logger = logging.getLogger(__name__)

EXIT_STALLED = 3  # the watchdog stopped the worker (worker/watchdog.py)
EXIT_ABANDONED = 4  # the way out did not finish within the bound


class ExitGuard:
    """Ends the process `bound_s` after it was armed, unless it ended by itself."""

    def __init__(self, bound_s: float, describe: Callable[[], str] = lambda: "",
                 exit_now: Callable[[int], object] = os._exit) -> None:
        self.bound_s = bound_s
        self.describe = describe  # where the process is, for the log line
        self._exit_now = exit_now
        self._lock = threading.Lock()
        self._armed: tuple[str, int, float] | None = None  # why, exit code, when
        self._disarmed = False  # the run returned before the deadline

    @property
    def armed(self) -> bool:
        return self._armed is not None

    def arm(self, why: str, code: int = EXIT_ABANDONED) -> None:
        """Start the clock (once: later calls keep the first reason, code and time)."""
        with self._lock:
            if self._armed is not None:
                return
            self._armed = (why, code, time.monotonic())
        threading.Thread(target=self._expire, args=(why, code), name="exit-guard",
                         daemon=True).start()

    def disarm(self) -> None:
        """The way out finished (the worker's run returned): the deadline no longer
        applies. What is left is the interpreter's own exit; and where the command ran
        inside a longer-lived process (tests, an embedding program), it must not end it."""
        with self._lock:
            self._disarmed = True

    def _expire(self, why: str, code: int) -> None:
        time.sleep(self.bound_s)
        with self._lock:
            if self._disarmed:
                return
        self.abandon(f"{why}: still not out after {self.bound_s:g}s", code)

    def abandon(self, why: str, code: int) -> None:
        """Log where the process is and what it gives up, then exit at once."""
        try:
            where = self.describe()
        except Exception as exc:  # the log line must not keep the process alive
            where = f"(could not tell: {exc!r})"
        logger.error("%s; exiting now (code %d) and abandoning: %s. Nothing more is "
                     "published or committed; the next owner of the partitions replays "
                     "from the last commit", why, code, where)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit_now(code)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: the work is done on the forwarding thread."""


def forward_signals(handlers: Mapping[int, Callable[[int], None]]) -> Callable[[], None]:
    """Call `handlers[signum](signum)` on a thread of its own as soon as the process
    receives one of these signals; returns a function that puts everything back.

    Must be called from the main thread (`signal.set_wakeup_fd`).
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = {signum: signal.signal(signum, _ignore) for signum in handlers}

    def pump() -> None:
        while True:
            try:
                received = os.read(read_fd, 64)
            except OSError:
                return
            if not received:  # the write end closed: undone
                return
            for signum in received:
                handler = handlers.get(signum)
                if handler is not None:
                    try:
                        handler(signum)
                    except Exception:  # a handler's bug must not end the forwarding
                        logger.exception("handling signal %d failed", signum)

    thread = threading.Thread(target=pump, name="signals", daemon=True)
    thread.start()

    def undo() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)
        thread.join(timeout=5)
        os.close(read_fd)

    return undo
