"""Stop strings: cut an answer before the first match, however the match is split across streamed deltas."""

from __future__ import annotations

from collections.abc import Sequence


class StopCutter:
    """Feed deltas in order; get back the text safe to send. A match can straddle deltas, so the last
    ``len(longest stop) - 1`` characters are held back until the next delta (or ``flush``) shows they are not one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that can go out now; after a match: the text before it, and ``stopped`` is True."""
        if self.stopped:
            return ""
        self.pending += text
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            out, self.pending, self.stopped = self.pending[: min(found)], "", True
            return out
        cut = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        """The held-back tail, at the end of the answer (it held no match)."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out
