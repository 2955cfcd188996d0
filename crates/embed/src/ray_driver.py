"""The Ray driver of the embed stage's Ray executor (crates/embed/src/ray.rs).

Started by the pipeline as `python ray_driver.py JOB.json`; compiled into the
pipeline's binary and written out for each run. It connects to a Ray cluster
(or starts one on this machine), ships the program, ONNX Runtime and the model
graph through Ray's object store once (workers keep a copy per digest, under
their temporary directory), runs one task per chunk (`PROGRAM embed-chunk`:
token ids in, vectors out, as Arrow IPC bytes) with a bounded number in flight,
and reports on stdout, one JSON object per line:

  {"event": "started", "cluster": ..., "ray": VERSION}
  {"event": "chunk", "index": I}           its vectors are in chunks[I].output
  {"event": "failed", "index": I, "message": ...}   retries used up
  {"event": "error", "kind": "no-ray" | "unreachable" | "other", "message": ...}

Everything else (Ray's own logging) goes to stderr. Closing its stdin stops it.
"""

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# stdout carries the events only: whatever else prints goes to stderr.
_events = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)


def emit(**event):
    _events.write(json.dumps(event) + "\n")
    _events.flush()


def fail(kind, message):
    emit(event="error", kind=kind, message=message)
    sys.exit(3)


class WorkerLost(Exception):
    """embed-chunk was killed by a signal (OOM killer, a lost node): retried."""


class ChunkFailed(Exception):
    """embed-chunk exited with an error: the same input would fail again."""


def _materialise(bundle):
    """The bundle's files on this worker: written once per digest."""
    name, digest, refs, basenames = bundle
    base = os.path.join(tempfile.gettempdir(), "bert-sentiment-ray")
    folder = os.path.join(base, f"{name}-{digest[:32]}")
    paths = [os.path.join(folder, b) for b in basenames]
    if os.path.exists(os.path.join(folder, ".complete")):
        return paths
    import ray

    os.makedirs(base, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=base)
    for ref, basename in zip(refs, basenames):
        data = ray.get(ref)
        path = os.path.join(scratch, basename)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)
    open(os.path.join(scratch, ".complete"), "w").close()
    try:
        os.rename(scratch, folder)
    except OSError:  # another task on this node was first
        shutil.rmtree(scratch, ignore_errors=True)
    return paths


def embed_chunk(bundles, chunk, task_args):
    program, libraries, model = (_materialise(b) for b in bundles)
    env = dict(os.environ, ORT_DYLIB_PATH=libraries[0])
    proc = subprocess.run(
        [program[0], "embed-chunk", "--model", model[0], *task_args],
        input=chunk,
        capture_output=True,
        env=env,
    )
    if proc.returncode < 0:
        raise WorkerLost(f"embed-chunk was killed by signal {-proc.returncode}")
    if proc.returncode != 0:
        raise ChunkFailed(proc.stderr.decode(errors="replace").strip()[-1500:])
    return proc.stdout


def describe(error):
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:1500]


def check_reachable(address):
    """A clear error within seconds, instead of ray.init retrying for minutes."""
    if address in (None, "auto"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as e:
        fail("unreachable", f"no answer at {hostport} ({e})")


def put_bundle(ray, name, paths):
    """The bundle as a task receives it: each file read once, hashed (the
    name workers keep their copy under) and put into the object store."""
    h = hashlib.sha256()
    refs = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        h.update(os.path.basename(path).encode() + b"\0")
        h.update(data)
        refs.append(ray.put(data))
    return (name, h.hexdigest(), refs, [os.path.basename(p) for p in paths])


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    address = job["address"]
    host = (address or "").split("://", 1)[-1].rpartition(":")[0]
    if address is None or host in ("127.0.0.1", "localhost", "::1"):
        # A cluster on this machine only: Ray then binds to loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address is None and "RAY_AUTH_MODE" not in os.environ:
        # The instance started for this run takes a token of its own, kept
        # in this process's environment: a new local ray.init() would
        # otherwise write ~/.ray/auth_token, which silently turns on token
        # authentication for every `ray start` on this machine afterwards.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:
        import ray
    except ImportError as e:
        fail("no-ray", f"`import ray` fails ({e})")

    check_reachable(address)

    # Closing our stdin (the pipeline stopped) ends the run, cleanly.
    def watch_stdin():
        sys.stdin.read()
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(4))
    threading.Thread(target=watch_stdin, daemon=True).start()

    try:
        if address is None:
            ray.init(include_dashboard=False, logging_level="warning")
        else:
            ray.init(address=address, logging_level="warning")
    except Exception as e:
        fail("unreachable" if address else "other", describe(e))
    try:
        run(ray, job)
    finally:
        ray.shutdown()


def run(ray, job):
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    emit(
        event="started",
        ray=ray.__version__,
        cluster=f"{nodes} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs",
    )
    # A task no node can hold would wait forever: say so now.
    largest = {
        kind: max((n["Resources"].get(kind, 0) for n in ray.nodes() if n.get("Alive")), default=0)
        for kind in ("CPU", "GPU")
    }
    for kind, asked, setting in (
        ("CPU", job["num_cpus"], "cpus_per_task"),
        ("GPU", job["num_gpus"], "gpus_per_task"),
    ):
        if asked > largest[kind]:
            fail(
                "other",
                f"a task asks for {asked:g} {kind}s (embed.{setting}) but the largest node of the "
                f"cluster has {largest[kind]:g}",
            )
    bundles = [put_bundle(ray, b["name"], b["files"]) for b in job["bundles"]]

    task = ray.remote(embed_chunk).options(
        num_cpus=job["num_cpus"],
        num_gpus=job["num_gpus"],
        max_retries=job["max_retries"],
        retry_exceptions=[WorkerLost],
    )
    # Enough tasks in flight to keep every slot busy, few enough that the
    # object store does not hold the whole input at once.
    per_task = job["num_gpus"] and resources.get("GPU", 0) / job["num_gpus"]
    slots = per_task or resources.get("CPU", 1) / max(job["num_cpus"], 1e-9)
    limit = max(2, int(2 * slots))

    chunks = job["chunks"]
    waiting = list(range(len(chunks)))[::-1]
    running = {}
    while waiting or running:
        while waiting and len(running) < limit:
            i = waiting.pop()
            with open(chunks[i]["input"], "rb") as f:
                running[task.remote(bundles, f.read(), job["task_args"])] = i
        (ref,), _ = ray.wait(list(running), num_returns=1)
        i = running.pop(ref)
        try:
            out = ray.get(ref)
        except Exception as e:
            emit(event="failed", index=i, message=describe(e))
            continue
        path = chunks[i]["output"]
        with open(path + ".part", "wb") as f:
            f.write(out)
        os.replace(path + ".part", path)
        emit(event="chunk", index=i)


if __name__ == "__main__":
    main()
