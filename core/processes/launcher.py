"""A warm launcher: background jobs forked from a process that has already imported Keras and its backend.

Every background job (a training run, a run's analysis, a learning-rate search, the model server, a dataset
fetch) is a `python -m core...` process of its own, and each one began by importing Keras and TensorFlow: about
4.5 CPU-s on 2 cores before its first line of work, so a run started from the app showed its first epoch that
much later. A process that launches jobs again and again (the app's server, a test worker) keeps a launcher
beside it instead (`keep_warm`): a process that imports Keras once, then forks a child for each job it is
asked for. The child becomes the job as `python -m` would have started it (its own session, arguments, working
folder, environment, log and exit) and finds Keras already loaded (docs/PERFORMANCE.md, "A warm launcher").

What it must not change:
- The job. The child runs the same module with the same arguments as `python -m` does (runpy); Flora's own
  modules are imported in the child (the launcher loads `core` and the frameworks only), so a module edited
  while the app runs is read afresh, as before.
- What the imports read. Keras, TensorFlow and JAX read some environment variables as they load (the backend,
  thread counts, XLA flags, the home folder's keras.json): a launcher serves only the jobs whose variables of
  that kind are its own (`import_key`); another job starts the plain way.
- A safe fork. A process forked while another of its threads holds a lock can hang; the launcher has one thread
  and, after its imports, checks that nothing started others (jemalloc's purge thread and OpenBLAS's parked pools
  aside: both fork safely) and that nothing loaded the CUDA driver (a GPU's state is not for sharing); if either
  happened, it serves nothing and jobs start the plain way.
- A job's life. The child leaves the launcher's session (setsid), so it outlives the launcher and the app like
  any detached job; the launcher reaps each child as it ends (SIGCHLD ignored), so no zombie looks alive. The
  launcher itself ends soon after the process that started it.

Anything that fails on the way (no launcher yet, a dead one, a refused job) starts the job the plain way: a
launcher only ever saves time. FLORA_WARM_LAUNCHER=0 turns it off. A launcher that would not serve says why in
its log beside its socket (<temp>/flora-launchers-<uid>/<pid>-<key>.log); one that served removes it as it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import types
from dataclasses import dataclass
from pathlib import Path

from core.paths import PROJECT_ROOT

ENV_SWITCH = "FLORA_WARM_LAUNCHER"  # "0": every job starts the plain way
# Environment variables read while Python, the C libraries and the frameworks load, by prefix: a job whose
# values of these differ from a launcher's is not forked from it.
IMPORT_VARIABLES = (
    "PYTHON", "KERAS_", "FLORA_BACKEND", "HOME", "TF_", "JAX_", "XLA_", "OMP_", "MKL_", "OPENBLAS_", "CUDA_",
    "NVIDIA_", "NCCL_", "TPU_", "LD_", "GLIBC_", "MALLOC_",
)  # fmt: skip
# Labels the frameworks put in the environment when they are imported: TensorFlow's TPU module names the framework
# (an export imports it), and JAX's import says there is no TPU metadata server to ask (no TPU library here). A job
# that imports them sets the same itself, so they say nothing about what the launcher's imports did.
SET_BY_FRAMEWORKS = frozenset({"TPU_ML_PLATFORM", "TPU_ML_PLATFORM_VERSION", "TPU_SKIP_MDS_QUERY"})
PRELOADED = ("keras",)  # what the launcher imports before it serves (its backend comes with it)
FORK_SAFE_THREADS = frozenset({"jemalloc_bg_thd"})  # jemalloc's purge thread: its own fork handlers
OWNER_CHECK_SECONDS = 2.0
# The launcher's command: `-c`, not `-m` (this module is already imported with its package); sys.path[0] then
# the full working folder, as `python -m` gives the jobs.
SERVE = "import os, sys; sys.path[0] = os.getcwd(); from core.processes.launcher import main; main()"
REPLY_TIMEOUT_SECONDS = 20.0
ROOM_FOR_A_JOBS_COMMAND = 384  # blanks at the end of the launcher's arguments, where a forked job writes its own


@dataclass
class _Launcher:
    key: str
    process: subprocess.Popen
    socket_path: Path
    served: int = 0

    def ready(self) -> bool:
        return self.process.poll() is None and self.socket_path.exists()


# this process's launcher by its import key (one at most: a job of another key starts the plain way), None where
# none could start
_launchers: dict[str, _Launcher | None] = {}
_lazy = {"on": False}  # this process keeps a launcher (keep_warm): the first job starts it, where none started yet
_lock = threading.Lock()


def available() -> bool:
    return hasattr(os, "fork") and sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1") != "0"


def keep_warm(env: dict[str, str], now: bool = True) -> bool:
    """This process launches jobs again and again (the app's server, a test worker): keep a launcher for the jobs
    it launches with `env` (the job environment `spawn_detached` gives). `now`: start it at once, so it has imported
    by the time the first job comes (a test worker, which launches many); otherwise at the first job, which starts
    the plain way beside it (the app: a server where nobody launches anything never pays for a launcher; the two
    imports are single-threaded, so on two cores or more neither waits for the other). Once per process and key:
    a launcher that ended is not started again, nor one for another key. Returns whether launchers are in use here."""
    if not available():
        return False
    with _lock:
        _lazy["on"] = True
        if now and not _launchers:
            key = import_key(env)
            _launchers[key] = _start(key, env)
    return True


def import_variables(env: dict[str, str]) -> dict[str, str]:
    """The variables of `env` that a job's imports read (IMPORT_VARIABLES), less the labels the frameworks set."""
    return {
        name: value
        for name, value in env.items()
        if name.startswith(IMPORT_VARIABLES) and name not in SET_BY_FRAMEWORKS
    }


def import_key(env: dict[str, str]) -> str:
    """What a job's environment gives its imports (with the interpreter and the project): equal keys, one launcher."""
    variables = sorted(import_variables(env).items())
    try:  # `core` itself stays loaded in a job (its import finder is in use): an edit to it wants a new launcher
        edited = os.stat(PROJECT_ROOT / "core" / "__init__.py").st_mtime_ns
    except OSError:
        edited = 0
    text = json.dumps([sys.executable, str(PROJECT_ROOT), edited, variables])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _socket_folder() -> Path | None:
    """This user's folder of launcher sockets (0700), or None where it is someone else's or the path too long."""
    folder = Path(tempfile.gettempdir()) / f"flora-launchers-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or len(str(folder)) > 70:  # sun_path holds 107 bytes
        return None
    return folder


def spawn(command: list[str], log_path: str | os.PathLike, env: dict[str, str]) -> int | None:
    """Start `command` (`python -m module ...`) forked from this process's warm launcher for `env`; its pid, or
    None when none serves it now (the caller then starts it the plain way)."""
    if not _lazy["on"] or len(command) < 3 or command[0] != sys.executable or command[1] != "-m":
        return None
    key = import_key(env)
    with _lock:
        if not _launchers:  # the first job: it starts the plain way, and the launcher for its kind beside it
            _launchers[key] = _start(key, env)
            return None
        launcher = _launchers.get(key)
    if launcher is None or not launcher.ready():
        return None
    request = {"module": command[2], "argv": command[3:], "cwd": str(PROJECT_ROOT), "env": env, "log": str(log_path)}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(REPLY_TIMEOUT_SECONDS)
            connection.connect(str(launcher.socket_path))
            connection.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(connection.makefile("rb").readline() or b"{}")
    except (OSError, ValueError):
        return None
    pid = reply.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    launcher.served += 1
    return pid


def _start(key: str, env: dict[str, str]) -> _Launcher | None:
    folder = _socket_folder()
    if folder is None:
        return None
    path = folder / f"{os.getpid()}-{key}.sock"
    path.unlink(missing_ok=True)  # a launcher of an earlier process of this pid left it
    with open(path.with_suffix(".log"), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(path), str(os.getpid()), " " * ROOM_FOR_A_JOBS_COMMAND],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    threading.Thread(target=process.wait, name=f"reap-launcher-{process.pid}", daemon=True).start()
    return _Launcher(key, process, path)


def launchers() -> list[tuple[int, int]]:
    """(pid, jobs served) of each launcher this process started."""
    return [(item.process.pid, item.served) for item in _launchers.values() if item is not None]


def stop_all(timeout: float = 10.0) -> None:
    """End the launchers this process started (by their process ids); the jobs they forked go on."""
    with _lock:
        started = [item for item in _launchers.values() if item is not None]
        _launchers.clear()
        _lazy["on"] = False
    for item in started:
        if item.process.poll() is None:
            item.process.terminate()
        try:
            item.process.wait(timeout)
        except subprocess.TimeoutExpired:
            item.process.kill()
        item.socket_path.unlink(missing_ok=True)
        item.socket_path.with_suffix(".log").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- the launcher


def _threads_a_fork_would_copy() -> list[str]:
    """The names of this process's other threads that are not known to fork safely (['?'] without /proc).

    Known: jemalloc's purge thread, and the parked worker threads of each OpenBLAS the imports loaded (NumPy's,
    SciPy's and OpenCV's each bring one, a worker a core beyond the first unless OPENBLAS_NUM_THREADS or
    OMP_NUM_THREADS says fewer): OpenBLAS ends its pool before a fork and starts it again when next used."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return ["?"]
    names = []
    for task in tasks:
        if int(task) == os.getpid():
            continue
        try:
            name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
        except OSError:
            continue  # ended meanwhile
        if name not in FORK_SAFE_THREADS:
            names.append(name)
    return names[_openblas_workers() :]


def _openblas_workers() -> int:
    """How many threads the loaded OpenBLAS pools hold (threadpoolctl, which scikit-learn brings, finds them)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 0
    return sum(max(0, info["num_threads"] - 1) for info in threadpool_info() if info.get("internal_api") == "openblas")


def _cuda_driver_loaded() -> bool:
    try:
        return "libcuda.so" in Path("/proc/self/maps").read_text()
    except OSError:
        return True


def serve(path: Path, owner: int) -> int:
    """Import the frameworks, then fork a job for each request on the socket at `path`, until `owner` ends."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    others = _threads_a_fork_would_copy()
    if others or threading.active_count() > 1:
        print(f"launcher: not serving: the imports started threads {others} that a fork would copy mid-use")
        return 0
    if _cuda_driver_loaded():
        print("launcher: not serving: the imports loaded the CUDA driver, whose state a forked job must not share")
        return 0
    me = os.getpid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps each job as it ends
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = path.with_name(f"{path.name}.{me}")
    listener.bind(str(temporary))
    listener.listen(16)
    os.replace(temporary, path)  # whole: a client never finds a socket that does not listen yet
    listener.settimeout(OWNER_CHECK_SECONDS)
    try:
        while os.getppid() == owner:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(REPLY_TIMEOUT_SECONDS)
                reply = _fork_job(connection, listener)
                connection.sendall(json.dumps(reply).encode() + b"\n")
    finally:
        if os.getpid() == me:  # not in a job: a job leaves this frame as it exits
            listener.close()
            path.unlink(missing_ok=True)
            path.with_suffix(".log").unlink(missing_ok=True)  # kept only where it says why it did not serve
    return 0


def _fork_job(connection: socket.socket, listener: socket.socket) -> dict:
    """Read one request, fork its job; {"pid": n} to the client, or {"error": why} (it then starts it itself)."""
    try:
        request = json.loads(connection.makefile("rb").readline())
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _become_job(request, log, [connection, listener])  # never returns: the job exits through SystemExit
    os.close(log)
    return {"pid": pid}


def _become_job(request: dict, log: int, sockets: list[socket.socket]) -> None:
    """In the forked child: become `python -m <module> <argv>` with the request's folder, environment and log."""
    for item in sockets:
        item.close()
    os.setsid()
    _show_as([sys.executable, "-m", request["module"], *request["argv"]])
    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # found again from this environment's TMPDIR
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # a fresh process's global generator starts from fresh entropy
    for name in [name for name in sys.modules if name.startswith("core.")]:
        del sys.modules[name]  # Flora's own modules load afresh in the job, as they would in a new process
    sys.argv = ["-m", *request["argv"]]
    sys.modules["__main__"] = types.ModuleType("__main__")  # the job's own main module, not the launcher's
    import runpy

    try:
        runpy._run_module_as_main(request["module"])  # what `python -m` runs
    except SystemExit:
        raise
    except BaseException:
        sys.excepthook(*sys.exc_info())
        raise SystemExit(1) from None
    raise SystemExit(0)


def _show_as(words: list[str]) -> None:
    """What `ps` and `top` show for the job: its own command line (as far as the launcher's leaves room for; the
    launcher's own would be every job's) and, Linux's 15-character name, its module and command."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, " ".join(words[2:4]).encode()[:15] + b"\0", 0, 0, 0)  # PR_SET_NAME
    try:  # the process's argument area, where /proc/<pid>/cmdline reads (fields 48 and 49 of /proc/self/stat)
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])
    except (OSError, ValueError, IndexError):
        return
    text = "\0".join(words).encode()[: max(0, end - start - 1)]
    ctypes.memmove(start, text + b"\0" * (end - start - len(text)), end - start)


def main() -> None:
    sys.exit(serve(Path(sys.argv[1]), int(sys.argv[2])))
