"""``tower-cat serve``: the HTTP server for CAT tools (our /v1 API, DeepL, LibreTranslate, Apertium APy)."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time

import click

from tower_cat.errors import ServiceError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BackgroundServer:
    """uvicorn in a thread (tests, embedding): ``with BackgroundServer(app, port=0) as s: s.url``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                     lifespan="off", timeout_keep_alive=30)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="tower-cat-http", daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        for server in self.server.servers:
            for sock in server.sockets:
                return sock.getsockname()[1]
        raise ServiceError("the server is not listening", status=503)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServiceError("the HTTP server did not start", status=503)
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@click.command("serve")
@click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder made by `tower-cat convert`.")
@click.option("--tm", "tm", metavar="DB|URL", help="Translation memory (a SQLite file or a postgresql:// URL; "
              "default: $TOWER_CAT_TM_URL) for exact matches and few-shot examples; /v1/tm adds to it.")
@click.option("--glossary", "glossaries", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="TBX or CSV/TSV glossary applied to every request (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--api-key", "api_keys", multiple=True, help="Accept only these keys (repeatable; also "
              "TOWER_CAT_API_KEYS, comma-separated). Without keys the server is open: keep it on loopback.")
@click.option("--languages", help="Comma-separated codes the model serves (default: from the model family).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 or 0,1.")
@click.option("--compute-type", default="auto", show_default=True)
@click.option("--endpoint", default=None, envvar="TOWER_CAT_ENDPOINT", metavar="URL",
              help="Run the model on this OpenAI-compatible inference server (vLLM, SGLang, TGI, llama.cpp); "
                   "--model then gives its tokenizer and family. Default: $TOWER_CAT_ENDPOINT.")
@click.option("--endpoint-key", default=None, envvar="TOWER_CAT_ENDPOINT_KEY", help="--endpoint's API key.")
@click.option("--served-model", default=None, help="--endpoint: the server's model name.")
@click.option("--threads", type=int, help="CPU threads for the model.")
@click.option("--cache", type=click.Path(dir_okay=False), help="SQLite generation cache (repeat requests "
              "answer without the model).")
@click.option("--batch-window-ms", default=15.0, show_default=True, type=float,
              help="How long the engine thread waits to fill a batch.")
@click.option("--max-batch", default=64, show_default=True, type=int, help="Segments per engine call.")
@click.option("--max-queue", default=1024, show_default=True, type=int,
              help="Segments queued before requests are refused (429/503).")
@click.option("--max-request-kb", default=128, show_default=True, type=int, help="Request body limit (413).")
@click.option("--character-limit", type=int, help="Characters per key (DeepL /v2/usage; 456 past it).")
@click.option("--max-new-tokens", default=512, show_default=True, type=int)
@click.option("--jobs-dir", type=click.Path(file_okay=False), help="Where file jobs keep uploads and results "
              "(default: a temporary folder).")
@click.option("--sessions", type=click.Path(dir_okay=False), help="SQLite file (or postgresql:// URL) for "
              "/v1/sessions (interactive refinement); default: the --state database when it is PostgreSQL, else "
              "sessions.sqlite in --jobs-dir or the user cache folder.")
@click.option("--state", type=click.Path(dir_okay=False), help="SQLite file of the server's durable state "
              "(glossaries, usage per key, file jobs, session owners), or a postgresql:// URL shared by several "
              "servers (sessions included); default: state.sqlite in --jobs-dir, else in memory.")
@click.option("--admin-key", help="A key that sees and manages every key's jobs, glossaries and sessions (also "
              "TOWER_CAT_ADMIN_KEY).")
@click.option("--tm-mode", type=click.Choice(["shared", "per-key"]), default="shared", show_default=True,
              help="shared: every key reads and writes --tm; per-key: each key has its own TM in the state "
                   "folder (--tm is the admin key's).")
@click.option("--job-workers", default=2, show_default=True, type=int, help="File jobs run at the same time.")
@click.option("--job-max-seconds", default=3600.0, show_default=True, type=float,
              help="A file job running longer is stopped and failed.")
@click.option("--job-max-units", default=200_000, show_default=True, type=int, help="Units per uploaded file.")
@click.option("--job-max-memory-mb", default=2048, show_default=True, type=int,
              help="Memory an upload may take to read (checked in a child process before the job runs).")
@click.option("--job-keep-days", default=7.0, show_default=True, type=float,
              help="Finished file jobs (and their files) are removed after this long.")
@click.option("--max-request-tokens", default=20_000, show_default=True, type=int,
              help="Source tokens per request, all segments together (413 past it, before any model work).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(model, tm, glossaries, host, port, api_keys, languages, device, compute_type, endpoint, endpoint_key,
          served_model, threads, cache,
          batch_window_ms, max_batch, max_queue, max_request_kb, character_limit, max_new_tokens, jobs_dir,
          sessions, state, admin_key, tm_mode, job_workers, job_max_seconds, job_max_units, job_max_memory_mb,
          job_keep_days, max_request_tokens, log_level):
    """Serve a model to CAT tools: /v1 (ours, OpenAPI at /docs), DeepL (/v2, /v3), LibreTranslate
    (/translate, /languages, /detect) and Apertium APy (/translate?langpair=, /listPairs)."""
    import uvicorn

    from .app import create_app
    from tower_cat.outputs import refuse_overlaps

    from .service import ServerConfig, Service

    in_jobs_dir = (lambda name: os.path.join(jobs_dir, name) if jobs_dir else None)
    local = (lambda spec: None if spec and "://" in spec else spec)  # a postgresql:// URL is no local file
    refuse_overlaps({"--tm": local(tm), "--cache": cache,
                     "--sessions": local(sessions) or in_jobs_dir("sessions.sqlite"),
                     "--state": local(state) or in_jobs_dir("state.sqlite")}, {"--glossary": list(glossaries)})
    keys = list(api_keys) + [k.strip() for k in os.environ.get("TOWER_CAT_API_KEYS", "").split(",") if k.strip()]
    admin_key = admin_key or os.environ.get("TOWER_CAT_ADMIN_KEY") or None
    if not keys and not admin_key and not _is_loopback(host):
        click.echo(f"warning: listening on {host} without --api-key: anyone who can reach it can use the model",
                   err=True)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    config = ServerConfig(model=model, tm=tm, glossaries=list(glossaries), api_keys=keys,
                          languages=[c.strip() for c in languages.split(",") if c.strip()] if languages else None,
                          device=device, compute_type=compute_type, threads=threads, cache=cache,
                          endpoint=endpoint, endpoint_key=endpoint_key, served_model=served_model,
                          batch_window=batch_window_ms / 1000.0, max_batch_prompts=max_batch, max_pending=max_queue,
                          max_request_bytes=max_request_kb * 1024, character_limit=character_limit,
                          max_new_tokens=max_new_tokens, jobs_dir=jobs_dir, sessions=sessions, state=state,
                          admin_key=admin_key, tm_mode=tm_mode, job_workers=job_workers,
                          job_max_seconds=job_max_seconds, job_max_units=job_max_units,
                          job_max_memory_mb=job_max_memory_mb, job_keep_days=job_keep_days,
                          max_request_tokens=max_request_tokens)
    click.echo(f"loading {model} ...", err=True)
    from .jobs import JobManager

    service = Service.from_config(config)
    app = create_app(service)
    service.jobs = JobManager(service, config.jobs_dir)  # now: jobs interrupted by a restart run again
    click.echo(f"tower-cat serving on http://{host}:{port} (API docs at /docs)", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    finally:
        service.close()
