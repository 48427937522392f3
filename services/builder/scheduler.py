"""Continuous batching for the served engine: one decode loop for every live request.

A request joins the running batch at the next decode step (its prompt is prefilled on its own, then its cache is
merged in), and leaves it the step it finishes, so a late request never waits for an earlier batch to end and an
early finisher never pads the rest. The Triton model feeds ``submit`` from ``execute`` and runs ``run`` on a
thread; tests drive ``step`` directly. Replies go to ``emit(handle, reply_or_error)``; a handle is whatever the
caller needs to answer (a Triton response sender). Each request decodes greedily unless it asked for sampling
(``Sampling``): its own temperature, top-p and random generator, applied to its own row inside the shared batch,
so one request's sampling never changes another's answer and the same seed gives the same tokens. A request may
also ask for each token's log-probability and the top-k alternatives (``services.builder.logprobs``), taken from the
logits its token was chosen from; batches where nobody asked decode exactly as before.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.builder import logprobs
from services.builder.engine import Choose, DecodeState, Engine, Reply, TextStream, encode_question

log = logging.getLogger("kefu.builder.scheduler")

Emit = Callable[[Any, "Reply | Exception"], None]
CANCEL_CHECK_EVERY = 8
NUCLEUS_START = 64  # tokens first considered for a top-p nucleus


class Sampling:
    """One request's sampling: temperature, nucleus (top-p) and its own generator (seeded: reproducible)."""

    def __init__(self, temperature: float, top_p: float = 1.0, seed: int | None = None) -> None:
        if not temperature > 0 or not 0 < top_p <= 1:
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1 (got {temperature}, {top_p})")
        self.temperature, self.top_p = temperature, top_p
        # Any integer is a seed (OpenAI's may be negative); numpy wants a non-negative one.
        self.rng = np.random.default_rng(None if seed is None else seed % 2**64)

    @classmethod
    def of(cls, temperature: float | None, top_p: float | None, seed: int | None) -> Sampling | None:
        """None (greedy) for temperature 0 / unset: what greedy already means needs no generator."""
        if not temperature:
            return None
        return cls(float(temperature), 1.0 if top_p is None else float(top_p), seed)

    def pick(self, logits: np.ndarray) -> int:
        """A token from one row's logits [vocab]: softmax at the temperature, cut to the top-p nucleus.

        This runs on the decode thread for every sampled row and step, so it avoids sorting the whole vocabulary
        (5 ms at 32k entries): the full distribution is sampled by inverse CDF, and the nucleus is found among the
        best 64 tokens (``argpartition``; a trained model's nucleus is rarely wider), the whole vocabulary only when
        their mass is short of ``top_p``."""
        scaled = logits.astype(np.float64) / self.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.top_p >= 1.0:
            return self._draw(probs, np.arange(probs.size))
        width = min(NUCLEUS_START, probs.size)
        while True:
            best = np.argpartition(-probs, width - 1)[:width] if width < probs.size else np.arange(probs.size)
            best = best[np.argsort(-probs[best], kind="stable")]
            mass = np.cumsum(probs[best])
            if mass[-1] >= self.top_p or width >= probs.size:
                # The smallest prefix whose mass reaches top_p (always at least the most likely token).
                keep = min(int(np.searchsorted(mass, self.top_p)) + 1, best.size)
                return self._draw(probs[best[:keep]], best[:keep])
            width = probs.size  # a flat distribution: one full sort beats widening step by step

    def _draw(self, weights: np.ndarray, ids: np.ndarray) -> int:
        cdf = np.cumsum(weights)
        return int(ids[min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), ids.size - 1)])


def choose_for(samplings: list[Sampling | None]) -> Choose | None:
    """The engine's ``choose`` for rows with these samplings (row order), or None when all rows are greedy."""
    if all(s is None for s in samplings):
        return None

    def choose(logits: np.ndarray) -> np.ndarray:
        ids = logits.argmax(axis=-1).astype(np.int64)
        for row, sampling in enumerate(samplings):
            if sampling is not None:
                ids[row] = sampling.pick(logits[row])
        return ids

    return choose


@dataclass
class _Request:
    serial: int
    handle: Any
    prompt: list[int]
    budget: int
    text: TextStream
    sampling: Sampling | None = None  # None: greedy
    top_logprobs: int | None = None  # None: no log-probabilities asked; else how many alternatives per token
    produced: int = 0
    unsent: str = ""
    sent_at: float | None = None  # when text last went out; None: nothing yet
    chosen: logprobs.TokenLogprob | None = None  # the log-probability of ``next_ids[row]``, until it is handed out
    unsent_logprobs: list[logprobs.TokenLogprob] | None = None


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

    def submit(
        self,
        handle: Any,
        question: str,
        max_tokens: int,
        context: str = "",
        sampling: Sampling | None = None,
        top_logprobs: int | None = None,
    ) -> None:
        """Queue a question with its references (thread-safe). Tokenizing here keeps the decode thread free.
        ``top_logprobs``: None for no log-probabilities, else 0 … 20 alternatives per token."""
        if top_logprobs is not None and not 0 <= top_logprobs <= logprobs.MAX_TOP_LOGPROBS:
            raise ValueError(f"logprobs must be between 0 and {logprobs.MAX_TOP_LOGPROBS} (got {top_logprobs})")
        prompt = encode_question(self.tokenizer, question, context)
        self._serial += 1
        budget = self.engine.budget(len(prompt), max_tokens)
        request = _Request(self._serial, handle, prompt, budget, TextStream(self.tokenizer), sampling, top_logprobs)
        if top_logprobs is not None:
            request.unsent_logprobs = []
        self.waiting.put(request)

    @staticmethod
    def _choose(rows: list[_Request]) -> Choose | None:
        """The engine's ``choose`` for these rows (row order): None — the engine's own argmax — unless some row
        samples or asked for log-probabilities."""
        choose = choose_for([r.sampling for r in rows])

        def record(row: int, chosen: logprobs.TokenLogprob) -> None:
            rows[row].chosen = chosen

        return logprobs.recording(choose, [r.top_logprobs for r in rows], record)

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
                choose = self._choose(joining)
                prompts = [r.prompt for r in joining]
                # All-greedy batches call the engine exactly as before sampling existed.
                fresh = self.engine.prefill(prompts) if choose is None else self.engine.prefill(prompts, choose)
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
            if r.unsent_logprobs is not None and r.chosen is not None:
                r.unsent_logprobs.append(r.chosen)
        now = time.perf_counter()
        if finish is not None:
            r.unsent += r.text.flush()
        elif not r.unsent or (r.sent_at is not None and now - r.sent_at < self.interval_s):
            return
        lps = None
        if r.unsent_logprobs is not None:
            lps, r.unsent_logprobs = tuple(r.unsent_logprobs), []
        self.emit(r.handle, Reply(r.serial, r.unsent, r.produced, len(r.prompt), finish, lps))
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
                choose = self._choose(self.active)
                self.state = self.engine.step(self.state) if choose is None else self.engine.step(self.state, choose)
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
