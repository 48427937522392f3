"""kill -9 of an embedded-stack process while it is busy, for tests/e2e/test_faults.py (which has the stack, a live
engine and the trainer/builder/feedback kills): the broker and its store mid-pipeline, the gateway during streaming
answers, ingest during an upload. Each helper kills, waits for the supervisor's restart and returns what clients saw.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from kefu.stack import read_status


def _status(env: dict[str, str]) -> dict[str, dict]:
    # The supervisor's state file, read here: `kefu status` is the same but takes seconds to start on a busy machine.
    return {s["name"]: s for s in read_status(Path(env["KEFU_HOME"]))["services"]}


def _restarted(env: dict[str, str], old: dict[str, int], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _status(env)
        if all(now[n]["pid"] != pid and now[n]["state"] == "running" for n, pid in old.items()):
            return
        time.sleep(0.3)
    raise AssertionError(f"{sorted(old)} not restarted within {timeout}s: {_status(env)}")


def kill_broker(env: dict[str, str]) -> list[str]:
    """SIGKILL the broker and its store together (nothing flushed); returns the names killed once both are back."""
    now = _status(env)
    old = {n: now[n]["pid"] for n in ("kafka", "kafka-store") if n in now}
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    _restarted(env, old)
    return sorted(old)


def _stream(url: str, key: str, question: str, started: threading.Event, outcome: list[str]) -> None:
    """One streamed answer; records ``complete`` (final chunk + [DONE]), ``error`` (the client saw a failure) or
    ``truncated`` (the stream ended cleanly but unfinished: what must never happen)."""
    body = {"model": "kefu-chat", "messages": [{"role": "user", "content": question}], "stream": True}
    body["max_tokens"] = 128
    finished = done = False
    try:
        with httpx.stream("POST", url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60) as resp:
            if resp.status_code != 200:
                outcome.append("error")
                return
            for line in resp.iter_lines():
                started.set()
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunk = json.loads(line.removeprefix("data: "))
                    if "error" in chunk:
                        outcome.append("error")
                        return
                    finished = finished or any(c.get("finish_reason") for c in chunk.get("choices", []))
    except httpx.HTTPError:  # a connection cut mid-body: the client knows the answer is incomplete
        outcome.append("error")
        return
    outcome.append("complete" if finished and done else "truncated")


def streams_cut_by_a_gateway_kill(env: dict[str, str], key: str, questions: list[str]) -> dict[str, int]:
    """Stream one answer per question at once; SIGKILL the gateway as soon as every stream has sent its first chunk."""
    url = f"http://127.0.0.1:{env['KEFU_GATEWAY_PORT']}/v1/chat/completions"
    outcome: list[str] = []
    starts = [threading.Event() for _ in questions]
    threads = [
        threading.Thread(target=_stream, args=(url, key, q, s, outcome), daemon=True)
        for q, s in zip(questions, starts, strict=True)
    ]
    for t in threads:
        t.start()
    for s in starts:
        s.wait(timeout=60)
    pid = _status(env)["gateway"]["pid"]
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(timeout=90)
    _restarted(env, {"gateway": pid})
    return {k: outcome.count(k) for k in ("complete", "error", "truncated")}


def _slow_multipart(path: Path, boundary: str, sent: threading.Event, killed: threading.Event) -> Iterator[bytes]:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield head
    data = path.read_bytes()
    half = len(data) // 2
    yield data[:half]
    sent.set()
    killed.wait(timeout=30)  # the rest goes out only after the kill: the server held half an upload
    yield data[half:] + f"\r\n--{boundary}--\r\n".encode()


def upload_cut_by_an_ingest_kill(env: dict[str, str], key: str, path: Path) -> str:
    """Send half of ``path`` as an upload, SIGKILL ingest while it waits for the rest; returns what the client saw."""
    url = f"http://127.0.0.1:{env['KEFU_INGEST_PORT']}/v1/datasets"
    boundary = "kefu-kill-test"
    sent, killed, seen = threading.Event(), threading.Event(), []

    def upload() -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
        try:
            resp = httpx.post(url, content=_slow_multipart(path, boundary, sent, killed), headers=headers, timeout=60)
            seen.append(f"http {resp.status_code}")
        except httpx.HTTPError as exc:
            seen.append(f"error {type(exc).__name__}")

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    assert sent.wait(timeout=30), "the upload never started"
    time.sleep(0.5)  # the half is on the server's side of the socket
    pid = _status(env)["ingest"]["pid"]
    os.kill(pid, signal.SIGKILL)
    killed.set()
    thread.join(timeout=60)
    _restarted(env, {"ingest": pid})
    return seen[0] if seen else "no answer"
