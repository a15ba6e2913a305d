"""The two inference protocols existing clients speak: the Open Inference Protocol (KServe v2 /
Triton; `tritonclient.http` works with its defaults) and TF Serving's REST API.

Open Inference Protocol inputs: `image` BYTES [N] (each element an encoded image file) or `pixels`
UINT8 [N, H, W, 3] (any H, W: resized as a photo is). Outputs: `probabilities` FP32 [N, C], `label`
BYTES [N], and when the run has an out-of-distribution reference `ood_score` FP32 [N] and
`out_of_distribution` BOOL [N]. The request parameter `prediction_set` (a level, e.g. 0.9) adds
`prediction_set` BYTES [N], each element the set's class names as a JSON list. The parameter `max_error` (e.g. 0.05:
answer only when sure) adds `abstained` BOOL [N] and `abstain_reason` BYTES [N]; so do a run's saved class thresholds.

A multi-label run answers `probabilities` FP32 [N, C] (every label's sigmoid), `labels` BYTES [N] (each element the
labels at or above their thresholds as a JSON list; `[]`: none of these), `none_of_these` BOOL [N] and `found` BYTES
[N] (JSON: those labels with their probability and threshold); its thresholds are in the model's metadata
(`parameters.label_thresholds`). TF Serving's body adds `labels`, `none_of_these` and `found` beside `predictions`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response

from core import __version__
from core.serving.registry import Route
from core.serving.service import Service
from core.serving.tfserving_body import tfserving_inputs
from core.serving.v2 import HEADER, InferRequest, ProtocolError, encode_response, json_part, parse_request

VERSION = "1"
LABEL_OUTPUTS = (("labels", "BYTES"), ("none_of_these", "BOOL"), ("found", "BYTES"))  # a multi-label run's


def metadata_of(route: Route) -> dict[str, Any]:
    model = route.loaded.model
    classes = len(model.classes)
    outputs = [{"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]}]
    if model.multilabel:  # JSON lists of label names, the labels with probability and threshold
        outputs += [{"name": name, "datatype": kind, "shape": [-1]} for name, kind in LABEL_OUTPUTS]
    else:
        outputs.append({"name": "label", "datatype": "BYTES", "shape": [-1]})
    if model.reference is not None:
        outputs += [
            {"name": "ood_score", "datatype": "FP32", "shape": [-1]},
            {"name": "out_of_distribution", "datatype": "BOOL", "shape": [-1]},
        ]
    if model.sets is not None:  # with the request parameter prediction_set (a level): JSON lists of class names
        outputs.append({"name": "prediction_set", "datatype": "BYTES", "shape": [-1]})
    if not model.multilabel:  # with the request parameter max_error (or the run's class thresholds): held back, why
        outputs += [
            {"name": "abstained", "datatype": "BOOL", "shape": [-1]},
            {"name": "abstain_reason", "datatype": "BYTES", "shape": [-1]},
        ]
    return {
        "name": route.name,
        "versions": [VERSION],
        "platform": "flora_keras",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
        ],
        "outputs": outputs,
        "parameters": {"classes": model.classes, **model.describe()},
    }


def v2_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["Open Inference Protocol (KServe v2 / Triton)"])

    @router.get("/v2", summary="Server metadata")
    async def server_metadata():
        return {"name": "flora", "version": __version__, "extensions": ["binary_tensor_data"]}

    @router.get("/v2/health/live", summary="The server process is up")
    async def live():
        return {"live": True}

    @router.get("/v2/health/ready", summary="Every model is loaded and warmed")
    async def ready(response: Response):
        if not service.registry.ready:
            response.status_code = 503
        return {"ready": service.registry.ready}

    @router.get("/v2/models/{name}", summary="A model's inputs, outputs and class names")
    @router.get("/v2/models/{name}/versions/{version}", include_in_schema=False)
    async def model_metadata(name: str, version: str | None = None):
        return metadata_of(service.registry.get(name))

    @router.get("/v2/models/{name}/ready", summary="The model is loaded and warmed")
    @router.get("/v2/models/{name}/versions/{version}/ready", include_in_schema=False)
    async def model_ready(name: str, version: str | None = None):
        service.registry.get(name)
        return {"name": name, "ready": service.registry.ready}

    @router.post(
        "/v2/models/{name}/infer",
        summary="Classify images (JSON or binary tensors)",
        description="Input `image` BYTES [N] (encoded files; base64 in JSON) or `pixels` UINT8 [N, H, W, 3].",
    )
    @router.post("/v2/models/{name}/versions/{version}/infer", include_in_schema=False)
    async def infer(name: str, request: Request, version: str | None = None):
        route = service.registry.get(name)
        body = await request.body()
        # off the event loop (in a helper process when its JSON is many numbers): it can take seconds of GIL
        header = request.headers.get(HEADER)
        parsed = await service.body_parser.parse(parse_request, json_part(body, header), body, header)
        route, outputs, images = await v2_answer(service, route, parsed, request.state.started)
        request.state.images = images
        content, header_length = encode_response(route.name, VERSION, parsed, outputs)
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream", headers={HEADER: str(header_length)})

    return router


async def v2_answer(
    service: Service, route: Route, parsed: InferRequest, started: float
) -> tuple[Route, list[tuple[str, str, np.ndarray]], int]:
    """An Open Inference Protocol request answered, over HTTP or gRPC alike: the route that answered, the
    outputs (name, datatype, array) and how many images it held. Raises ProtocolError or InputError."""
    set_level = service.set_level_of(route, parsed.parameters.get("prediction_set"))
    max_error = service.max_error_of(route, parsed.parameters.get("max_error"))
    decoded = await _v2_inputs(service, route, parsed)
    route, answers = await service.answer(route, decoded, started, set_level=set_level, max_error=max_error)
    outputs = [("probabilities", "FP32", np.stack([a.probabilities for a in answers]).astype(np.float32))]
    if route.loaded.model.multilabel:
        outputs += [
            ("labels", "BYTES", _bytes_array([json.dumps(a.labels).encode() for a in answers])),
            ("none_of_these", "BOOL", np.array([not a.labels for a in answers], dtype=bool)),
            ("found", "BYTES", _bytes_array([json.dumps(a.found).encode() for a in answers])),
        ]
    else:
        outputs.append(("label", "BYTES", _bytes_array([a.label.encode() for a in answers])))
    if set_level is not None:
        sets = [json.dumps(a.prediction_set or []).encode() for a in answers]
        outputs.append(("prediction_set", "BYTES", _bytes_array(sets)))
    if any(a.abstained is not None for a in answers):
        outputs.append(("abstained", "BOOL", np.array([bool(a.abstained) for a in answers], dtype=bool)))
        reasons = [(a.abstain_reason or "").encode() for a in answers]
        outputs.append(("abstain_reason", "BYTES", _bytes_array(reasons)))
    if route.loaded.model.reference is not None:
        outputs.append(("ood_score", "FP32", np.array([a.ood_score for a in answers], dtype=np.float32)))
        outputs.append(("out_of_distribution", "BOOL", np.array([a.ood_flag for a in answers], dtype=bool)))
    known = {name for name, _, _ in outputs}
    unknown = [out for out in parsed.outputs if out not in known]
    if unknown:
        raise ProtocolError(f"unknown output(s) {unknown}; this model has {sorted(known)}")
    return route, outputs, len(decoded)


async def _v2_inputs(service: Service, route: Route, request: InferRequest):
    if len(request.inputs) != 1:
        raise ProtocolError(
            f"send exactly one input, 'image' (BYTES [N]) or 'pixels' (UINT8 [N, H, W, 3]); "
            f"received {len(request.inputs)}: {[t.name for t in request.inputs]}"
        )
    tensor = request.inputs[0]
    if tensor.name == "image":
        if tensor.datatype != "BYTES":
            raise ProtocolError(f"input 'image' must be BYTES (encoded image files). Received: {tensor.datatype}")
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise ProtocolError(f"input 'image' must have shape [N] (or [N, 1]). Received: {tensor.shape}")
        files = [(f"image[{i}]", bytes(item)) for i, item in enumerate(tensor.data.reshape(-1))]
        return await service.decode_strict(route, files)
    if tensor.name == "pixels":
        if tensor.datatype != "UINT8":
            raise ProtocolError(f"input 'pixels' must be UINT8 (0-255 RGB). Received: {tensor.datatype}")
        if len(tensor.shape) != 4 or tensor.shape[3] != 3 or 0 in tensor.shape[1:3]:
            raise ProtocolError(f"input 'pixels' must have shape [N, H, W, 3]. Received: {tensor.shape}")
        return await service.decode_pixels(route, [(f"pixels[{i}]", image) for i, image in enumerate(tensor.data)])
    raise ProtocolError(f"unknown input {tensor.name!r}: send 'image' (BYTES [N]) or 'pixels' (UINT8 [N, H, W, 3])")


def _bytes_array(items: list[bytes]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


# ---------------------------------------------------------------------------------- TF Serving REST


def tfserving_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["TF Serving REST"])

    @router.get("/v1/models/{name}", summary="Model status")
    @router.get("/v1/models/{name}/versions/{version}", include_in_schema=False)
    async def status(name: str, version: str | None = None):
        for verb in (":predict", ":classify", ":regress"):
            if (version or name).endswith(verb):
                raise HTTPException(405, f"use POST: {verb[1:]} takes a JSON body", headers={"Allow": "POST"})
        service.registry.get(name)
        ok = {"error_code": "OK", "error_message": ""}
        return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE", "status": ok}]}

    @router.get("/v1/models/{name}/metadata", summary="Signature: inputs, outputs and class names")
    async def metadata(name: str):
        route = service.registry.get(name)
        model = route.loaded.model
        signature = {
            "inputs": {"image_bytes": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
            "outputs": {
                "probabilities": {
                    "dtype": "DT_FLOAT",
                    "tensor_shape": {"dim": [{"size": "-1"}, {"size": str(len(model.classes))}]},
                }
            },
            "method_name": "tensorflow/serving/predict",
        }
        return {
            "model_spec": {"name": route.name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
            "classes": model.classes,
            **({"task": "multilabel", "label_thresholds": model.thresholds} if model.multilabel else {}),
        }

    @router.post(
        "/v1/models/{name}:predict",
        summary="Classify images, TF Serving style",
        description='`{"instances": [{"b64": "<base64 JPEG>"}, ...]}` (or H x W x 3 pixel arrays) -> '
        '`{"predictions": [[p_class0, p_class1, ...], ...]}` (a multi-label run: every label\'s probability, and '
        "`labels`, `none_of_these` and `found`: each photo's labels at or above their thresholds). "
        '`"prediction_set": 0.9` in the body (or '
        '`?prediction_set=0.9`) adds `prediction_sets`: each photo\'s conformal set of class names. `"max_error": '
        "0.05` (or `?max_error=0.05`) answers only when sure: `abstained` (one per photo) and `abstain_reasons`.",
    )
    @router.post("/v1/models/{name}/versions/{version}:predict", include_in_schema=False)
    async def predict(
        name: str,
        request: Request,
        version: str | None = None,
        prediction_set: str | None = None,
        max_error: str | None = None,
    ):
        route = service.registry.get(name)
        raw = await request.body()
        # off the event loop (in a helper process when it is many numbers): 20 MB of pixel numbers hold the GIL seconds
        files, arrays, columnar, asked, sure = await service.body_parser.parse(tfserving_inputs, raw, raw)
        set_level = service.set_level_of(route, prediction_set if prediction_set is not None else asked)
        level = service.max_error_of(route, max_error if max_error is not None else sure)
        if files:
            decoded = await service.decode_strict(route, files)
        else:
            decoded = await service.decode_pixels(route, arrays)
        request.state.images = len(decoded)
        route, answers = await service.answer(
            route, decoded, request.state.started, set_level=set_level, max_error=level
        )
        predictions = [[round(float(p), 7) for p in a.probabilities] for a in answers]
        body = {"outputs": predictions} if columnar else {"predictions": predictions}
        if set_level is not None:
            body["prediction_sets"] = [a.prediction_set for a in answers]
        if any(a.abstained is not None for a in answers):
            body["abstained"] = [bool(a.abstained) for a in answers]
            body["abstain_reasons"] = [a.abstain_reason for a in answers]
        if route.loaded.model.multilabel:  # each photo's labels at or above their thresholds ([]: none of these)
            body["labels"] = [a.labels for a in answers]
            body["none_of_these"] = [not a.labels for a in answers]
            body["found"] = [a.found for a in answers]
        return body

    return router
