"""HTTP API of the ingest service: upload a Q-A file, get a stored, announced dataset version back."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from libs.common.http import ApiError, error_responses
from libs.datasets.options import IngestOptions
from libs.datasets.pipeline import prepare_dataset, write_dataset
from libs.datasets.store import store_dataset
from services.ingest.deps import RuntimeDep, SessionDep, SettingsDep, Uploader
from services.ingest.errors import IngestError, LimitExceeded
from services.ingest.settings import Settings
from services.ingest.sources import read_records

router = APIRouter(prefix="/v1")
#: Uploads are files: a ``postgres`` source would make the service connect wherever a client says.
UPLOAD_FORMATS = ("json", "jsonl", "csv", "sqlite")
#: limit → (status, error code, setting): rows are content too large (413); a slow query is unprocessable (422).
_LIMITS = {
    "rows": (413, "too_many_rows", "KEFU_INGEST_MAX_ROWS"),
    "query_time": (422, "query_timeout", "KEFU_INGEST_QUERY_TIMEOUT_SECONDS"),
}


def _prepare(
    path: Path, fmt: str | None, query: str | None, options: IngestOptions, out: Path, settings: Settings
) -> tuple[str, Any]:
    records = read_records(
        str(path),
        fmt,
        query,
        max_rows=settings.ingest_max_rows,
        query_timeout_s=settings.ingest_query_timeout_seconds,
    )
    prepared = prepare_dataset(records, options, source=path.name)
    return write_dataset(prepared, out), prepared.card


@router.post(
    "/datasets",
    status_code=201,
    responses=error_responses(
        (400, "Not a readable Q-A dataset, or a bad format/options field"),
        401,
        403,
        (413, "Upload, or its rows, over a limit (too_large, too_many_rows)"),
        (422, "The SQLite query ran past its time limit (query_timeout)"),
    ),
)
async def upload_dataset(
    rt: RuntimeDep,
    settings: SettingsDep,
    session: SessionDep,
    _uploader: Uploader,
    file: Annotated[UploadFile, File(description="A .json, .jsonl, .csv or SQLite file of Q-A pairs.")],
    format: Annotated[str | None, Form(description="json|jsonl|csv|sqlite; default: by file name.")] = None,
    query: Annotated[str | None, Form(description="One SELECT for a SQLite upload.")] = None,
    eval_ratio: Annotated[float | None, Form()] = None,
) -> dict[str, Any]:
    """Clean, redact, deduplicate and split the upload; store it and publish ``dataset.ready``.

    Needs a ``data`` or ``admin`` key. Limits: ``KEFU_INGEST_MAX_UPLOAD_BYTES`` (413 ``too_large``),
    ``KEFU_INGEST_MAX_ROWS`` (413 ``too_many_rows``), ``KEFU_INGEST_QUERY_TIMEOUT_SECONDS`` (422 ``query_timeout``).
    """
    limit = settings.ingest_max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"upload exceeds {limit} bytes (limit KEFU_INGEST_MAX_UPLOAD_BYTES)")
    if format is not None and format not in UPLOAD_FORMATS:
        raise ApiError(400, "bad_dataset", f"format must be one of {', '.join(UPLOAD_FORMATS)}")
    name = Path(file.filename or "upload").name
    try:
        options = IngestOptions(**({"eval_ratio": eval_ratio} if eval_ratio is not None else {}))
    except ValueError as exc:
        raise ApiError(400, "invalid_options", str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="kefu-upload-") as tmp:
        src = Path(tmp) / name
        src.write_bytes(data)
        out = Path(tmp) / "out"
        try:
            dataset_id, card = await asyncio.to_thread(_prepare, src, format, query, options, out, settings)
        except LimitExceeded as exc:
            status, code, setting = _LIMITS[exc.limit]
            raise ApiError(status, code, f"{_relative(exc, tmp)} ({setting})") from None
        except IngestError as exc:
            raise ApiError(400, "bad_dataset", _relative(exc, tmp)) from None
        async with session.begin():
            event = await store_dataset(session, rt.artifacts, out, dataset_id, card, name)
    rt.kick_outbox()
    return {"dataset_id": dataset_id, "published": event is not None, "card": card}


def _relative(exc: Exception, tmp: str) -> str:
    """The error as the client should see it: its file name, not this server's temp path."""
    return str(exc).replace(f"{tmp}/", "")
