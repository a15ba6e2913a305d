"""Serve: start and stop the model server, try it with curl or tritonclient, move aliases, export."""

from __future__ import annotations

import shlex
from pathlib import Path

import streamlit as st

from core.data.multilabel import names_of
from core.data.thumbnails import example_photo
from core.processes import JobState
from core.results.probabilities import class_thresholds, conformal, promise, selective
from core.serving.job import DEFAULT_PORT, ServerRunning, launch_server, server_folder, server_status, stop_server
from pages.ui import auth, common, dataset_choice, last_run, plain, teaching
from pages.ui.navigation import page_file
from pages.ui.serving import sections as serving

LIVE_EVERY = 2.0

st.title("Serve")
st.caption(
    "Put a trained run to work behind a REST server that existing clients already speak: the Open Inference "
    "Protocol (KServe v2 / Triton), TF Serving's REST API, and a plain multipart upload for curl."
)
teaching.explain("serving")

runs = serving.served_runs()
if not runs:
    st.info("No trained model yet. Train a run first; it can be served once it has a model.", icon=":material/dns:")
    st.page_link(page_file("train"), label="Go to Train", icon=":material/arrow_forward:")
    st.stop()


def start_form() -> None:
    if not auth.current_user().admin:
        st.caption("Starting the model server is an admin's step on a shared Flora.")
        return
    listed = serving.aliases().all()
    alias_names = sorted(listed, key=lambda a: (a != serving.DEFAULT_ALIAS, a))  # production first
    names = alias_names + [run.run_id for run in runs]
    labels = {run.run_id: common.run_label(run) for run in runs}
    labels |= {a: f"{a} → run {listed[a]['run_id']} (alias)" for a in alias_names}
    # What production serves; with no alias yet, the run last picked on Evaluate, Explore or Predict, else the newest.
    ids = [run.run_id for run in runs]
    first = names[0] if alias_names else last_run.opening_run(ids, ids[0])
    default = [first] if names else []
    # An alias made since: the picker follows it. And after a server ran, the picker (not drawn meanwhile, so
    # Streamlit dropped its value) starts from the default again instead of empty (walk 55).
    if st.session_state.get("serve_models_default") != default or "serve_models" not in st.session_state:
        st.session_state["serve_models_default"] = default
        st.session_state["serve_models"] = default
    last = server_status(common.models_root())
    if "serve_port" not in st.session_state:  # after a Stop, the port it ran on (not the default again)
        st.session_state["serve_port"] = int(last.port or DEFAULT_PORT)
    # Enter in a field does not start the server: only the button does.
    with st.form("serve_start", enter_to_submit=False):
        chosen = st.multiselect(
            "Models to serve (aliases follow their run when it moves)",
            names,
            format_func=lambda n: labels.get(n, f"alias {n}"),
            key="serve_models",
        )
        if not alias_names:
            st.caption(
                f"No alias yet, so clients name the run by its id ({first}"
                f"{', the newest' if first == ids[0] else ', the run you last picked'}). Point "
                f"*{serving.DEFAULT_ALIAS}* at a run under Aliases below and serve that instead: clients keep one "
                "name while the run behind it changes."
            )
        cols = st.columns(4)
        port = cols[0].number_input("Port", 1024, 65535, key="serve_port")
        max_batch = cols[1].number_input("Max batch", 1, 256, 32, key="serve_max_batch", help="1 turns batching off")
        max_wait = cols[2].number_input("Max wait (ms)", 0.0, 100.0, 5.0, key="serve_max_wait")
        grpc_port = cols[3].number_input(
            "gRPC port (0: none)",
            0,
            65535,
            0,
            key="serve_grpc_port",
            help="Also serve the Open Inference Protocol over gRPC (KServe's grpc_predict_v2; tritonclient.grpc "
            "works as is) on this port, with the same models, limits and API key.",
        )
        api_key = st.text_input(
            "API key (optional)",
            type="password",
            key="serve_api_key",
            help="Clients then send 'Authorization: Bearer <key>' on every route but health; /docs has an "
            "Authorize button for it. Without a key the server answers anyone who can reach it on this machine. "
            "The key is handed to the server process only (never written to disk or its command line).",
        )
        if st.form_submit_button("Start server", icon=":material/play_arrow:", type="primary"):
            if not chosen:
                st.error("Pick at least one model to serve above.", icon=":material/error:")
                return
            try:
                launch_server(
                    common.models_root(),
                    common.data_root(),
                    chosen,
                    port=int(port),
                    max_batch=int(max_batch),
                    max_wait_ms=float(max_wait),
                    api_key=api_key.strip() or None,
                    grpc_port=int(grpc_port) or None,
                )
            except (ServerRunning, ValueError) as e:
                st.error(plain.md(e))
            else:
                st.rerun()


@st.fragment(run_every=LIVE_EVERY)
def server_panel() -> None:
    status = server_status(common.models_root())
    if not status.active:
        if status.state is JobState.FAILED and status.error:
            st.error(f"The last server failed: {plain.md(status.error)}", icon=":material/error:")
        elif status.finished_at:
            st.caption("The server is stopped.")
        start_form()
        return
    url = status.url or f"http://{status.host}:{status.port}"
    head = st.columns([3, 1], vertical_alignment="center")
    if status.ready:
        grpc = f" · gRPC at **{status.grpc}**" if status.grpc else ""
        head[0].success(f"Serving at **{url}** · docs at [{url}/docs]({url}/docs){grpc}", icon=":material/dns:")
    else:
        head[0].info(f"Starting at {url}: {plain.md(status.stage or 'loading')}…", icon=":material/hourglass_top:")
    if auth.current_user().admin and head[1].button("Stop server", icon=":material/stop:", key="serve_stop"):
        stop_server(common.models_root())
        st.toast("Stopping the server after the requests in hand…")
    counters = status.counters or {}
    metrics = st.columns(5)
    metrics[0].metric("Requests / s (10 s)", f"{counters.get('rate', 0):.1f}")
    metrics[1].metric("Requests", counters.get("requests", 0))
    metrics[2].metric("Images", counters.get("images", 0))
    metrics[3].metric("Client errors (4xx)", counters.get("client_errors", 0))
    metrics[4].metric("Busy (503)", counters.get("rejected", 0))
    if status.models:
        st.dataframe(
            [
                {
                    "name": m["name"],
                    "run": m["run_id"],
                    "alias": m["alias"],
                    "OOD method": m.get("ood_method") or "-",
                    "mean batch": m["batching"]["mean_batch"],
                    "batches": m["batching"]["batches"],
                    "queued": m["queued"],
                }
                for m in status.models
            ],
            hide_index=True,
            width="stretch",
        )
        for m in status.models:
            if m.get("ood_summary"):  # how far the 'looks like no class it knows' flag can be trusted
                st.caption(f"**{plain.md(m['name'])}**, 'looks like no class it knows': {m['ood_summary']}")
    if status.swaps:
        last = status.swaps[-1]
        took = last.get("load_seconds")
        loaded = f" ({took:.1f} s to load and warm it first; the old run answered meanwhile)" if took else ""
        st.caption(f"Last alias move: **{plain.md(last['alias'])}** {last['from']} → {last['to']}{loaded}")
    with st.expander("Server log"):
        st.code(server_folder(common.models_root()).log_tail(30) or "(empty)", language=None)
    try_it(url, status, bool((status.options or {}).get("auth")))


@st.cache_data(show_spinner=False, max_entries=16)
def example_file(dataset_path: str) -> str | None:
    return example_photo(dataset_path)


def example_of(run_id: str | None) -> tuple[str, str]:
    """(a photo of the run's own dataset for the snippets, what it is in words); "photo.jpg" when none is found."""
    run = next((r for r in runs if r.run_id == run_id), None)
    if run is not None and run.multilabel:
        return multilabel_example(run)
    found = example_file(run.dataset_path) if run is not None else None
    if not found:
        return "photo.jpg", "any photo of the classes the model knows"
    classes = ", ".join(plain.md(c) for c in (run.classes or [])[:6]) + (", …" if len(run.classes or []) > 6 else "")
    where = f"{plain.code(Path(found).name)}, a photo of **{plain.md(Path(found).parent.name)}** from the dataset"
    return found, f"{where} {plain.md(run.dataset_name)}; any photo of its classes ({classes}) works the same"


def multilabel_example(run) -> tuple[str, str]:
    """A multi-label run's example: the first photo of its dataset's label file, said with that photo's own labels
    (its photos sit in one folder: the folder is no label; walk 54 read the run's labels as the photo's)."""
    try:
        index = dataset_choice.scan(run.dataset_path)
    except (ValueError, OSError):  # gone, moved out of the data roots, or its label file unreadable
        index = None
    if index is None or not index.multilabel or not index.entries:
        return "photo.jpg", "any photo; the model answers which of its labels each photo shows"
    labels = names_of(index.targets, 0, index.classes)
    has = f"its labels in the dataset: {', '.join(plain.md(n) for n in labels)}" if labels else "it has no label"
    where = f"{plain.code(Path(index.entries[0].path).name)}, a photo from the dataset {plain.md(run.dataset_name)}"
    return str(index.absolute(index.entries[0])), f"{where} ({has}); any photo works the same"


def labels_words() -> str:
    """What a multi-label run answers on every route, and what it does not take yet."""
    return (
        "A multi-label run answers each photo's `labels`: every label whose score reaches its threshold (tuned on "
        "the run's validation photos), `[]` with `none_of_these: true` when none does; `found` gives those labels "
        "with score and threshold, `scores` every label's score (the model's own number for each label, not a "
        "calibrated chance). v2 clients read the outputs `labels` and `found` (JSON lists) and `probabilities`; "
        "TF Serving's body adds `labels` beside `predictions`. Prediction sets and `max_error` are for "
        "single-label runs."
    )


def sets_words(run_id: str) -> str:
    """What `prediction_set=0.9` adds: the promise (an average over many photos, not each one) beside what the run's
    held-out photos measured at 90%, with their count."""
    run = next((r for r in runs if r.run_id == run_id), None)
    sets = conformal.load(run.directory) if run is not None else None
    covers = promise.promise_words(
        0.9, bool(sets and sets.by_class), [plain.md(c) for c in sets.few_photos(0.9)] if sets is not None else ()
    )
    said = (  # walk 53: 'the classes that, on average over many photos ..., sets at 90% hold' read garbled
        "Add `&prediction_set=0.9` for each photo's prediction set (any level from 0.8 to 0.99; v2 clients pass the "
        "request parameter `prediction_set`): the classes the right one is among. The promise: " + covers
    )
    if sets is None:
        return said + "."
    at = 0.9 if sets.at_level(0.9) else sets.level
    right, photos, full = sets.held_record(at)
    said += (
        f". On this run's {photos} held-out test photos, sets at {at:.0%} held the right class "
        f"{promise.held_words(right, photos, at)}"
    )
    every = promise.full_words(full / photos if photos else 0.0, len(sets.classes))
    return said + (f"; {every}." if every else ".")


def try_it(url: str, status, auth: bool) -> None:
    """Client snippets that name what the server serves (production first, then another alias, then a run) and a
    photo of that run's own dataset."""
    served = [m["name"] for m in status.models] or list(status.names)
    model = status.client_name() or runs[0].run_id
    if len(served) > 1:
        model = st.selectbox("Model in the examples", served, index=served.index(model), key="serve_try_model")
    answering = status.answering(model)
    photo, photo_words = example_of(answering or model)
    if answering and answering != model:
        st.caption(f"Clients name **{plain.md(model)}**; it answers with run {answering} now, and follows the alias.")
    elif answering:
        st.caption(
            f"Clients name run **{model}** by its id: it stays that run. Serve an alias such as "
            f"*{serving.DEFAULT_ALIAS}* to let clients keep one name while the run behind it changes."
        )
    bearer = ' -H "Authorization: Bearer $FLORA_API_KEY"' if auth else ""
    if auth:
        st.caption(
            "This server asks for its API key: set FLORA_API_KEY to it in your shell first (whoever started the "
            "server has it)."
        )
    headers = ', headers={"Authorization": "Bearer " + os.environ["FLORA_API_KEY"]}' if auth else ""
    imports = (
        "import os, numpy as np, tritonclient.http as triton"
        if auth
        else "import numpy as np, tritonclient.http as triton"
    )
    st.caption(f"The examples send {photo_words}.")
    names = ["curl", "tritonclient (Python)", "TF Serving REST"] + (["gRPC (Python)"] if status.grpc else [])
    curl, triton, tf, *grpc = st.tabs(names)
    behind = next((r for r in runs if r.run_id == (answering or model)), None)
    multilabel = behind is not None and behind.multilabel
    query = "" if multilabel else "&top_k=3"  # a multi-label run gives every label that reaches its threshold
    curl.code(f'curl{bearer} -F {shlex.quote("file=@" + photo)} "{url}/predict?model={model}{query}"', language="bash")
    curl.caption(labels_words() if multilabel else sets_words(answering or model))
    held = None if multilabel or behind is None else holding_back_words(behind)
    if held:
        curl.caption(held)
    answer = "labels" if multilabel else "label"
    triton.code(
        f"""{imports}
client = triton.InferenceServerClient("{url.removeprefix("http://")}")
photo = triton.InferInput("image", [1], "BYTES")
photo.set_data_from_numpy(np.array([open({photo!r}, "rb").read()], dtype=object))
result = client.infer("{model}", [photo]{headers})
print(result.as_numpy("{answer}"), result.as_numpy("probabilities"))""",
        language="python",
    )
    tf.code(  # the body goes through a file: a photo's base64 on the command line fails over ~96 KB
        f"""{{ printf '{{"instances": [{{"b64": "'; base64 -w0 {shlex.quote(photo)}; printf '"}}]}}'; }} > request.json
curl{bearer} -H "Content-Type: application/json" --data-binary @request.json \\
     {url}/v1/models/{model}:predict""",
        language="bash",
    )
    if held:
        triton.caption(
            "A held-back answer still names its best guess in `label`: read the `abstained` and `abstain_reason` "
            "outputs first (they come whenever something can hold an answer back)."
        )
    if grpc:
        grpc_snippet(grpc[0], status.grpc, model, photo, auth, answer)


def holding_back_words(run) -> str:
    """What `max_error` adds and what holds answers back without it (the run's saved class thresholds), and that a
    held-back answer keeps its best guess in `label` (walk 52: Serve said nothing of either, and the page's own
    example came back held back by a saved threshold)."""
    saved = class_thresholds.load(run.directory)
    fitted = selective.load(run.directory)
    if fitted is not None and fitted.threshold_at(0.05) is None:  # walk 53: suggested where nothing can be answered
        nearest = fitted.nearest_at(0.05)
        level = None if nearest is None else nearest["max_error"]
        where = (
            f" On this run no threshold can promise 5%: every answer would come back held back; the nearest level it "
            f"can promise is {level:.0%} (`&max_error={level:g}`)."
            if level is not None
            else " On this run no level up to 50% can be promised: with `max_error`, every answer comes back held back."
        )
    else:
        where = ""
    said = (
        "Add `&max_error=0.05` to answer only when sure (at most 5% wrong among the answers given, promised with "
        "probability 90%; v2 clients pass the request parameter `max_error`): a photo under the run's threshold comes "
        "back `abstained: true` with its `reason`, and its `label` is then only the best guess, so read `abstained` "
        "first." + where
    )
    if saved:
        named = ", ".join(f"{plain.md(k)} {class_thresholds.figure(v)}" for k, v in saved.items())
        said += (
            f" This run also has saved class thresholds ({named}, set on Evaluate): they hold answers of those classes "
            "back under them even without `max_error`, and say so in the reason."
        )
    return said


def grpc_snippet(tab, address: str, model: str, photo: str, auth: bool, answer: str = "label") -> None:
    """The Open Inference Protocol over gRPC (`--grpc-port`): tritonclient.grpc, the same inputs and outputs."""
    headers = ', headers={"authorization": "Bearer " + os.environ["FLORA_API_KEY"]}' if auth else ""
    imports = "import os, numpy as np" if auth else "import numpy as np"
    tab.code(
        f"""{imports}
import tritonclient.grpc as grpcclient

client = grpcclient.InferenceServerClient("{address}")
photo = grpcclient.InferInput("image", [1], "BYTES")
photo.set_data_from_numpy(np.array([open({photo!r}, "rb").read()], dtype=object))
result = client.infer("{model}", [photo]{headers})
print(result.as_numpy("{answer}"), result.as_numpy("probabilities"))""",
        language="python",
    )
    tab.caption(
        "The same model, batcher and limits as HTTP (KServe's grpc_predict_v2). gRPC's model metadata cannot carry "
        f"class names: each answer's `{answer}` output names its {'labels' if answer == 'labels' else 'class'}, and "
        "HTTP's model page lists them all."
    )


server_panel()

st.subheader("Aliases")
serving.alias_table()

st.subheader("Exports")
st.caption(
    "Each export is loaded back in its own runtime (TensorFlow, onnxruntime, LiteRT) and compared with the Keras "
    "model on the run's test photos; one that disagrees beyond tolerance fails."
)
labels = {run.run_id: common.run_label(run) for run in runs}
export_run = st.selectbox("Run to export", list(labels), format_func=labels.get, key="serve_export_run")
serving.export_section(common.store().get(export_run))

st.subheader("Feedback → retrain → compare → promote")
serving.retrain_section(key="serve")
