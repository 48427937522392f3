"""HTTP API of the ingest service: upload a Q-A file, get a stored, announced dataset version back."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from libs.common.http import ApiError
from libs.common.runtime import ServiceRuntime
from services.ingest.errors import IngestError
from services.ingest.options import IngestOptions
from services.ingest.pipeline import prepare_dataset, write_dataset
from services.ingest.publish import store_dataset
from services.ingest.sources import read_records

router = APIRouter(prefix="/v1")


def _prepare(path: Path, fmt: str | None, query: str | None, options: IngestOptions, out: Path) -> tuple[str, Any]:
    prepared = prepare_dataset(read_records(str(path), fmt, query), options, source=path.name)
    return write_dataset(prepared, out), prepared.card


@router.post("/datasets", status_code=201)
async def upload_dataset(
    request: Request,
    file: Annotated[UploadFile, File(description="A .json, .jsonl, .csv or SQLite file of Q-A pairs.")],
    format: Annotated[str | None, Form(description="json|jsonl|csv|sqlite; default: by file name.")] = None,
    query: Annotated[str | None, Form(description="SELECT for a SQLite upload.")] = None,
    eval_ratio: Annotated[float | None, Form()] = None,
) -> dict[str, Any]:
    """Clean, redact, deduplicate and split the upload; store it and publish ``dataset.ready``."""
    rt: ServiceRuntime = request.app.state.runtime
    limit = rt.settings.ingest_max_upload_bytes  # type: ignore[attr-defined]
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"upload exceeds {limit} bytes")
    name = Path(file.filename or "upload").name
    try:
        options = IngestOptions(**({"eval_ratio": eval_ratio} if eval_ratio is not None else {}))
    except ValueError as exc:
        raise ApiError(400, "invalid_options", str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="kefu-upload-") as tmp:
        src = Path(tmp) / name
        src.write_bytes(data)
        try:
            dataset_id, card = await asyncio.to_thread(_prepare, src, format, query, options, Path(tmp) / "out")
        except IngestError as exc:
            raise ApiError(400, "bad_dataset", str(exc)) from None
        event = await store_dataset(rt.sessions, rt.artifacts, Path(tmp) / "out", dataset_id, card, name)
    rt.kick_outbox()
    return {"dataset_id": dataset_id, "published": event is not None, "card": card}
