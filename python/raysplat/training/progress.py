"""Progress reporting for long work: a tqdm bar on a terminal, a line every ``interval`` seconds
otherwise (logs and CI stay readable), nothing when disabled."""

from __future__ import annotations

import sys
import time


class Progress:
    """``update(n, **postfix)`` / ``write(msg)`` / ``close()`` over tqdm or plain lines.

    Args:
        total: the expected count (``None``: unknown, e.g. a time-limited run).
        desc: the label.
        enabled: ``False`` prints nothing.
        initial: the count already done (a resumed run).
        interval: seconds between lines when stderr is not a terminal.
    """

    def __init__(
        self, total: int | None, desc: str, enabled: bool = True, initial: int = 0, interval: float = 10.0
    ):
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, initial
        self.interval, self._last, self._postfix = interval, time.perf_counter(), ""
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # noqa: PLC0415

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, n: int = 1, **postfix) -> None:
        """Advances by ``n``; ``postfix`` values are shown beside the count."""
        self.n += n
        if not self.enabled:
            return
        if postfix:
            self._postfix = ", ".join(f"{k}={v}" for k, v in postfix.items())
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix_str(self._postfix, refresh=False)
        elif time.perf_counter() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last = time.perf_counter()
        of = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: step {self.n}{of} {self._postfix}".rstrip(), file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        """Prints ``msg`` on its own line (above the bar)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Closes the bar (or prints the final line)."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._line()
