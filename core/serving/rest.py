"""For people and curl: a multipart `/predict`, feedback, and the list of served models."""

from __future__ import annotations

import json
import time

import anyio
from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile as StarletteUpload

from core.data.imaging import ImageError, ImageTooLarge
from core.serving.service import InputError, Service


def router(service: Service) -> APIRouter:
    api = APIRouter(tags=["People and curl"])

    @api.get("/models", summary="The models this server answers for")
    async def models():
        return {"models": service.registry.models(), "swaps": service.registry.swaps[-20:]}

    @api.post(
        "/predict",
        summary="Classify uploaded photos",
        description=(
            "Multipart upload of one or more photos (any field name), e.g. "
            "`curl -F file=@photo.jpg 'http://127.0.0.1:8500/predict?top_k=3'`. Query `model` picks an alias or "
            "run (default: the first one served). Each photo gets its top-k labels with probabilities "
            "(calibrated where the run has a temperature) and an out-of-distribution flag; a photo that "
            "cannot be read gets an error of its own. All unreadable: 400. `prediction_set=0.9` adds each photo's "
            "conformal prediction set: the classes that, on average over many photos like the run's calibration "
            "photos, hold the right one 9 times in 10 (levels 0.8-0.99; not for each photo; the run's held-out "
            "figure is `prediction_sets.held_out_coverage` in the model's v2 metadata). "
            "`max_error=0.05` answers only when sure: a photo under the run's threshold for at most 5% wrong among "
            "the photos answered (promised with probability 90%) gets `abstained: true` and the `reason`; a run's "
            "saved per-class thresholds hold back answers the same way. A multi-label run answers each photo's "
            "`labels` (each at or above its threshold, tuned on validation; `[]` with `none_of_these: true` when none "
            "is), `found` (those labels with their probability and threshold) and `scores` (every label's "
            "probability); it takes neither `prediction_set` nor `max_error`."
        ),
    )
    async def predict(
        request: Request,
        model: str | None = None,
        top_k: int = 3,
        prediction_set: str | None = None,
        max_error: str | None = None,
        files: list[UploadFile] | None = File(None, description="the photos"),  # noqa: B008
    ):
        route = service.registry.get(model) if model else service.registry.default()
        set_level = service.set_level_of(route, prediction_set)
        level = service.max_error_of(route, max_error)
        uploads = await _uploads(request)
        if not uploads:
            raise InputError("no file in the upload: send photos as multipart form data (curl -F file=@photo.jpg)")
        decoded = await service.decode_files(route, uploads)
        good = [d for d in decoded if not isinstance(d, ImageError)]
        request.state.images = len(good)
        if not good:
            problems = "; ".join(f"{name}: {e}" for (name, _), e in zip(uploads, decoded, strict=True))
            too_large = all(isinstance(e, ImageTooLarge) for e in decoded)
            return JSONResponse({"error": f"no readable image: {problems}"}, status_code=413 if too_large else 400)
        route, answers = await service.answer(
            route, good, request.state.started, top_k=max(1, top_k), set_level=set_level, max_error=level
        )
        it = iter(answers)
        results = []
        for (name, _), item in zip(uploads, decoded, strict=True):
            if isinstance(item, ImageError):
                results.append({"name": name, "error": str(item)})
            else:
                results.append(
                    {"name": name, "image_sha256": item.sha256, **next(it).to_dict(route.loaded.model.ood_method)}
                )
        took = (time.perf_counter() - request.state.started) * 1000
        return {"model": route.name, "run_id": route.loaded.run_id, "milliseconds": round(took, 1), "results": results}

    @api.post(
        "/v1/feedback",
        summary="Say what a photo really shows",
        description=(
            "Multipart `file` + `label` (+ `model`): the label is stored on the photo's predictions in the log "
            "and the photo is kept for retraining (training and validation splits only). JSON "
            '`{"image_sha256": "...", "label": "..."}` updates the log only.'
        ),
    )
    async def feedback(request: Request):
        if not service.feedback_open:
            return JSONResponse({"error": service.feedback_closed_reason}, status_code=403)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/"):
            form = await request.form()
            label, model = str(form.get("label") or ""), form.get("model")
            uploads = await _uploads(request)
            if len(uploads) != 1:
                raise InputError("send exactly one photo (field 'file') with its 'label'")
            name, data = uploads[0]
            sha = ""
        else:
            body = await request.body()
            try:
                parsed = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise InputError(f"malformed JSON in the request: {e}") from None
            if not isinstance(parsed, dict):
                raise InputError('send {"image_sha256": "...", "label": "..."}')
            label, model, name, data = str(parsed.get("label") or ""), parsed.get("model"), None, None
            sha = str(parsed.get("image_sha256") or "")
        route = service.registry.get(str(model)) if model else service.registry.default()
        run = route.loaded.model.run
        if run.multilabel:
            raise InputError(
                f"run {run.run_id} is multi-label: feedback keeps a photo under one class, and its photos carry label "
                "lists (not yet for multi-label runs)"
            )
        if label not in run.classes:
            raise InputError(f"unknown label {label!r}; the model knows: {', '.join(run.classes)}")
        if data is None and not sha:
            raise InputError("feedback needs the photo (multipart 'file') or its 'image_sha256'")
        client = request.client.host if request.client else "unknown"
        # Decoding the photo, writing it and waiting on the prediction log run in a bounded worker pool: a
        # bomb of a photo or a log another process holds locked must not stall the event loop (and /healthz).
        return await anyio.to_thread.run_sync(
            service.keep_feedback, route, label, data, name, sha, client, limiter=service.feedback_limiter
        )

    return api


async def _uploads(request: Request) -> list[tuple[str, bytes]]:
    form = await request.form()
    out = []
    for _, value in form.multi_items():
        if isinstance(value, StarletteUpload):
            out.append((value.filename or "upload", await value.read()))
    return out
