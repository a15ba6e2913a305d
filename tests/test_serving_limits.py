"""A model server that can face the network: a decode budget, nothing blocking the event loop, feedback behind
the key and within quotas, /docs usable with the key, and no listening beyond loopback without a key."""

from __future__ import annotations

import concurrent.futures
import io
import json
import sqlite3
import threading
import time

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image

from core.runs.store import RunStore
from core.serving.aliases import AliasStore
from core.serving.app import create_app
from core.serving.body_parsing import BodyParser
from core.serving.decode_budget import DecodeBudget, DecodeBusy
from core.serving.log import PredictionLog
from core.serving.quota import FeedbackQuota, QuotaExceeded
from core.serving.registry import BatchOptions
from core.serving.server import BackgroundServer, ServerLimits, serve
from core.sharing import is_loopback
from tests.conftest import copy_run
from tests.test_serving import InProcess, photos


def bomb(side: int = 10000) -> bytes:
    """A 1-bit PNG of side x side pixels: 12 KB that say 100 megapixels."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("limits") / "models"
    copy_run(trained_run["store"].run_dir(trained_run["run_id"]), root / trained_run["run_id"])
    store = RunStore(root)
    AliasStore(root).set("production", trained_run["run_id"])
    data_root = tmp_path_factory.mktemp("limits-data")
    limits = ServerLimits(decode_budget_bytes=150 * 1024 * 1024, feedback_per_client=1000)
    with BackgroundServer(store, ["production"], BatchOptions(max_batch=8), data_root, limits=limits) as running:
        yield {"server": running, "store": store, "dataset": trained_run["dataset"], "data_root": data_root}


def health_while(url: str, work) -> tuple[float, list]:
    """Run `work()` calls in threads and poll /healthz meanwhile; (slowest health answer, the work results)."""
    slowest = 0.0
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = work(pool)
        time.sleep(0.2)  # let them reach the server
        with httpx.Client(timeout=30) as http:
            while not all(f.done() for f in futures):
                started = time.perf_counter()
                assert http.get(f"{url}/healthz").status_code == 200
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.05)
        return slowest, [f.result() for f in futures]


def test_the_decode_budget_bounds_what_is_decoded_at_once():
    budget = DecodeBudget(100, wait_seconds=5)
    at_once, peak = 0, 0
    lock = threading.Lock()

    def decode():
        nonlocal at_once, peak
        with budget.hold(40):
            with lock:
                at_once += 1
                peak = max(peak, at_once)
            time.sleep(0.05)
            with lock:
                at_once -= 1

    threads = [threading.Thread(target=decode) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2 and budget.peak == 80 and budget.in_use == 0 and budget.waited > 0
    with budget.hold(500):  # one image over the whole budget decodes alone
        assert budget.in_use == 100
    impatient = DecodeBudget(100, wait_seconds=0.2)
    with impatient.hold(100), pytest.raises(DecodeBusy, match="try again"), impatient.hold(1):
        pass


def test_bombs_decode_within_the_budget_and_health_stays_fast(server):
    url = server["server"].url
    data = bomb()
    budget = server["server"].service.budget

    def work(pool):
        return [
            pool.submit(lambda: httpx.post(f"{url}/predict", files={"file": ("b.png", data)}, timeout=120).status_code)
            for _ in range(12)
        ]

    slowest, statuses = health_while(url, work)
    assert statuses == [200] * 12  # a 100 MP 1-bit PNG is an image, decoded small and cheap
    assert budget.peak <= budget.limit and budget.waited > 0  # 150 MB: one 100 MB decode at a time
    assert slowest < 1.0


def test_bomb_feedback_and_a_locked_log_do_not_stall_health(server):
    """Before: 12 bomb feedbacks made /healthz take 7.2 s; a log locked by another process froze every route."""
    url, data = server["server"].url, bomb()

    def feedbacks(pool):
        return [
            pool.submit(
                lambda: (
                    httpx.post(
                        f"{url}/v1/feedback", files={"file": ("b.png", data)}, data={"label": "green"}, timeout=120
                    ).status_code
                )
            )
            for _ in range(6)
        ]

    slowest, statuses = health_while(url, feedbacks)
    assert statuses == [200] * 6 and slowest < 1.0

    log_path = PredictionLog.of_store(server["store"].root).path
    holder = sqlite3.connect(log_path, timeout=1, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the log
    release = threading.Timer(3.0, holder.rollback)
    release.start()
    try:

        def labelled(pool):
            body = {"image_sha256": "0" * 64, "label": "green"}
            return [pool.submit(lambda: httpx.post(f"{url}/v1/feedback", json=body, timeout=60).status_code)]

        slowest, statuses = health_while(url, labelled)
    finally:
        release.join()
        holder.close()
    assert statuses == [200] and slowest < 1.0


def test_a_20_mb_json_pixel_body_does_not_block_other_routes(server):
    """Before: a 19.7 MB JSON pixel body blocked everything for ~4 s."""
    url = server["server"].url
    side = 1100  # 1100 x 1100 x 3 numbers of "255, ": about 19 MB of JSON
    body = json.dumps({"instances": [[[[255, 255, 255]] * side] * side]}).encode()
    assert len(body) > 15_000_000

    def work(pool):
        return [
            pool.submit(
                lambda: (
                    httpx.post(
                        f"{url}/v1/models/production:predict",
                        content=body,
                        headers={"content-type": "application/json"},
                        timeout=120,
                    ).status_code
                )
            )
        ]

    parser = server["server"].service.body_parser
    before = parser.in_a_process
    slowest, statuses = health_while(url, work)
    # json.loads and np.asarray each hold the GIL for their whole call (~1 s here, 5 s on a busy CI machine), so a
    # worker thread was not enough: the body went to a helper process, and health answered meanwhile.
    assert statuses == [200] and parser.in_a_process == before + 1
    assert slowest < 1.0


def test_a_v2_json_body_of_many_numbers_is_parsed_in_a_helper_process_with_the_same_answer(server):
    url, parser = server["server"].url, server["server"].service.body_parser
    side = 300  # 270,000 numbers: over the process threshold
    pixels = np.full((1, side, side, 3), 90, dtype=np.uint8)
    body = {
        "inputs": [
            {"name": "pixels", "datatype": "UINT8", "shape": list(pixels.shape), "data": pixels.ravel().tolist()}
        ]
    }
    small = {"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 20, 20, 3], "data": [90] * 1200}]}
    before = parser.in_a_process
    big = httpx.post(f"{url}/v2/models/production/infer", json=body, timeout=120)
    assert big.status_code == 200 and parser.in_a_process == before + 1
    assert httpx.post(f"{url}/v2/models/production/infer", json=small, timeout=60).status_code == 200
    assert parser.in_a_process == before + 1  # a small body stays in a worker thread
    wrong = dict(body, inputs=[dict(body["inputs"][0], shape=[1, side, side, 4])])
    refused = httpx.post(f"{url}/v2/models/production/infer", json=wrong, timeout=120)
    assert refused.status_code == 400 and "shape" in refused.json()["error"]  # the helper's error, as a thread's


def test_the_body_parser_falls_back_to_a_thread_when_its_helper_dies():
    parser = BodyParser(numbers_for_a_process=1)
    text = b"[" + b"1," * 300_000 + b"1]"
    try:
        assert anyio.run(parser.parse, json.loads, text, text)[:3] == [1, 1, 1]
        assert parser.in_a_process == 1
        for process in parser._pool._processes.values():
            process.kill()
            process.join()
        assert len(anyio.run(parser.parse, json.loads, text, text)) == 300_001  # parsed in a thread instead
        assert anyio.run(parser.parse, json.loads, text, text)[0] == 1  # and a fresh helper after
        assert parser.in_a_process == 2
    finally:
        parser.close()


def test_a_submit_that_meets_the_dying_pools_closed_queue_parses_in_a_thread(monkeypatch):
    """Under load the pool can be shutting its queues down (its helper died) while a submit starts a fresh helper:
    submit raises OSError ("handle is closed"), not BrokenProcessPool; the request is still parsed, in a thread."""
    parser = BodyParser(numbers_for_a_process=1)
    text = b"[" + b"1," * 300_000 + b"1]"
    pool = parser._started()

    def closed(*args, **kwargs):
        raise OSError("handle is closed")

    monkeypatch.setattr(pool, "submit", closed)
    try:
        assert len(anyio.run(parser.parse, json.loads, text, text)) == 300_001 and parser.in_a_process == 0
        assert parser._pool is None  # discarded: the next request starts a fresh helper
    finally:
        pool.shutdown()
        parser.close()


def test_feedback_needs_the_key_beyond_loopback(server):
    service = server["server"].service
    photo = photos(server["dataset"], 1)[0].read_bytes()
    try:
        public = InProcess(create_app(service, api_key="", host="0.0.0.0"))
        refused = public.post("/v1/feedback", files={"file": ("p.png", photo)}, data={"label": "green"})
        assert refused.status_code == 403 and "feedback is closed" in refused.json()["error"]
        assert public.post("/predict", files={"file": ("p.png", photo)}).status_code == 200  # predictions still
        keyed = InProcess(create_app(service, api_key="k3y", host="0.0.0.0"))
        assert keyed.post("/v1/feedback", json={"image_sha256": "1" * 64, "label": "green"}).status_code == 401
        ok = keyed.post(
            "/v1/feedback", json={"image_sha256": "1" * 64, "label": "green"}, headers={"Authorization": "Bearer k3y"}
        )
        assert ok.status_code == 200
    finally:
        service.feedback_closed_reason = None  # the module's server listens on loopback


def test_feedback_quotas_per_client_and_in_total(server):
    quota = FeedbackQuota(per_client=2, total=3, per_client_bytes=1000, total_bytes=10_000)
    quota.admit("10.0.0.1", 100, kept_count=0, kept_bytes=0, now=0)
    quota.admit("10.0.0.1", 0, kept_count=0, kept_bytes=0, now=1)  # a label-only call counts too
    with pytest.raises(QuotaExceeded, match="in the last 24 hours"):
        quota.admit("10.0.0.1", 100, kept_count=1, kept_bytes=100, now=2)
    quota.admit("10.0.0.1", 100, kept_count=1, kept_bytes=100, now=24 * 3600 + 1)  # a day later
    with pytest.raises(QuotaExceeded, match="MB of feedback photos"):
        quota.admit("10.0.0.2", 2000, kept_count=0, kept_bytes=0, now=0)
    with pytest.raises(QuotaExceeded, match="holds 3 photos"):
        quota.admit("10.0.0.3", 10, kept_count=3, kept_bytes=30, now=0)

    service = server["server"].service
    saved = service.quota
    service.quota = FeedbackQuota(per_client=1)
    try:
        http = InProcess(create_app(service))
        body = {"image_sha256": "2" * 64, "label": "green"}
        assert http.post("/v1/feedback", json=body).status_code == 200
        over = http.post("/v1/feedback", json=body)
        assert over.status_code == 429 and "limit per client" in over.json()["error"]
        # over real HTTP from loopback, a forged X-Forwarded-For is not a new client (before: 200 after the 429)
        service.quota = FeedbackQuota(per_client=1)
        url = server["server"].url
        assert httpx.post(f"{url}/v1/feedback", json=body, timeout=30).status_code == 200
        forged = {"X-Forwarded-For": "10.9.9.9"}
        assert httpx.post(f"{url}/v1/feedback", json=body, headers=forged, timeout=30).status_code == 429
    finally:
        service.quota = saved


def test_docs_open_with_the_key_and_say_how_to_send_it(server):
    http = InProcess(create_app(server["server"].service, api_key="k3y"))
    assert http.get("/docs").status_code == 200  # before: 401 in the browser
    schema = http.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert schema["security"] == [{"apiKey": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert http.get("/models").status_code == 401


def test_no_listening_beyond_loopback_without_a_key(server, monkeypatch, caplog):
    monkeypatch.delenv("FLORA_API_KEY", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.4")
    code = serve(server["store"], ["production"], host="0.0.0.0", port=1)
    assert code == 1 and "refusing to listen on 0.0.0.0 without an API key" in caplog.text
