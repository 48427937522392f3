"""Continuous batching for the served engine: one decode loop for every live request.

A request joins the running batch at the next decode step (its prompt is prefilled on its own, then its cache is
merged in), and leaves it the step it finishes, so a late request never waits for an earlier batch to end and an
early finisher never pads the rest. The Triton model feeds ``submit`` from ``execute`` and runs ``run`` on a
thread; tests drive ``step`` directly. Replies go to ``emit(handle, reply_or_error)``; a handle is whatever the
caller needs to answer (a Triton response sender).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.builder.engine import DecodeState, Engine, Reply, TextStream, encode_question

log = logging.getLogger("kefu.builder.scheduler")

Emit = Callable[[Any, "Reply | Exception"], None]
CANCEL_CHECK_EVERY = 8


@dataclass
class _Request:
    serial: int
    handle: Any
    prompt: list[int]
    budget: int
    text: TextStream
    produced: int = 0
    unsent: str = ""
    sent_at: float | None = None  # when text last went out; None: nothing yet


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        emit: Emit,
        *,
        max_active: int = 32,
        stream_interval_ms: float = 4.0,
        streams_per_message: int = 2,
        is_cancelled: Callable[[Any], bool] | None = None,
    ) -> None:
        self.engine, self.tokenizer, self.emit = engine, tokenizer, emit
        self.max_active = max_active
        self.stream_interval_s = stream_interval_ms / 1000
        self.streams_per_message = streams_per_message
        self.interval_s = self.stream_interval_s
        self.is_cancelled = is_cancelled or (lambda _handle: False)
        self.waiting: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self.active: list[_Request] = []
        self.state: DecodeState | None = None
        self._serial = 0

    def submit(self, handle: Any, question: str, max_tokens: int, context: str = "") -> None:
        """Queue a question with its references (thread-safe). Tokenizing here keeps the decode thread free."""
        prompt = encode_question(self.tokenizer, question, context)
        self._serial += 1
        budget = self.engine.budget(len(prompt), max_tokens)
        self.waiting.put(_Request(self._serial, handle, prompt, budget, TextStream(self.tokenizer)))

    def _admit(self, block: bool) -> bool:
        """Move waiting requests into the batch (up to max_active); False once ``stop`` was submitted."""
        joining: list[_Request] = []
        while len(self.active) + len(joining) < self.max_active:
            try:
                item = self.waiting.get(block=block and not joining and not self.active, timeout=0.5)
            except queue.Empty:
                break
            if item is None:
                return False
            if item.budget <= 0:
                self._reply(item, None, "length")
            else:
                joining.append(item)
        if joining:
            try:
                fresh = self.engine.prefill([r.prompt for r in joining])
            except Exception as exc:
                log.exception("prefill failed")
                for r in joining:
                    self.emit(r.handle, exc)
                return True
            self.state = fresh if self.state is None else DecodeState.concat(self.state, fresh)
            self.active += joining
        return True

    def _reply(self, r: _Request, token: int | None, finish: str | None) -> None:
        """Hand out a row's new text: the first text and the end at once, the rest at most every ``interval_s``.

        A message costs far more than a decode step (an IPC round trip with Triton, ~0.6 ms here, plus the
        gateway's and the client's work), so text is sent every few milliseconds instead of every token; that is
        below what a reader or a 60 Hz screen can tell apart. Under load (more rows than ``streams_per_message``)
        the interval grows with the rows, so messages stop growing with the number of streams."""
        if token is not None:
            r.produced += 1
            r.unsent += r.text.push(token)
        now = time.perf_counter()
        if finish is not None:
            r.unsent += r.text.flush()
        elif not r.unsent or (r.sent_at is not None and now - r.sent_at < self.interval_s):
            return
        self.emit(r.handle, Reply(r.serial, r.unsent, r.produced, len(r.prompt), finish))
        r.unsent, r.sent_at = "", now

    def step(self, block: bool = False) -> bool:
        """Admit, hand out every row's latest token, drop finished rows, decode once. False after ``stop``."""
        if not self._admit(block):
            return False
        if self.state is None:
            return True
        self.interval_s = self.stream_interval_s * -(-len(self.active) // self.streams_per_message)
        keep: list[int] = []
        for row, r in enumerate(self.active):
            token = int(self.state.next_ids[row])
            # Asking Triton whether a client has gone is an IPC round trip: every 8th token is soon enough.
            if r.produced % CANCEL_CHECK_EVERY == 0 and self.is_cancelled(r.handle):
                self._reply(r, None, "cancelled")
            elif token in self.engine.eos_token_ids:
                self._reply(r, None, "stop")
            else:
                done = r.produced + 1 >= r.budget
                self._reply(r, token, "length" if done else None)
                if not done:
                    keep.append(row)
        if len(keep) < len(self.active):
            self.active = [self.active[row] for row in keep]
            self.state = self.state.select(keep) if keep else None
        if self.state is not None:
            try:
                self.state = self.engine.step(self.state)
            except Exception as exc:
                log.exception("decode step failed")
                for r in self.active:
                    self.emit(r.handle, exc)
                self.active, self.state = [], None
        return True

    def run(self) -> None:
        """Decode until ``stop``; sleeps on the queue while nothing is running."""
        while self.step(block=True):
            pass
        for r in self.active:
            self.emit(r.handle, RuntimeError("the model is being unloaded"))
        self.active, self.state = [], None

    def stop(self) -> None:
        self.waiting.put(None)
