"""File jobs under ``/v1``: upload an XLIFF / SDLXLIFF / MQXLIFF / PO / TMX file, poll the job, download the
translated file.

``POST /v1/files`` (multipart: ``file``, ``target_lang``, optional ``source_lang``, ``task`` =
``translate``|``post-edit``, ``overwrite``, ``few_shot``, ``glossary_id``) answers ``202`` with a job id;
``GET /v1/jobs/{id}`` gives status (queued, running, cancelling, done, failed) and progress (units done /
total); ``GET /v1/jobs/{id}/download`` returns the file written by ``tower_cat.pipeline.run_files`` (the same
job as ``tower-cat translate``); ``GET /v1/jobs/{id}/summary`` the job's JSON summary; ``DELETE
/v1/jobs/{id}`` deletes a finished job and cancels a queued or running one (its files go too).

Jobs belong to the key that created them: another key gets 404, the admin key sees all (see
``adapters/state.py``).

Durable: every job is a record in the server state (``ServerState``) and a folder under the jobs folder
(``in/``, ``out/``, ``summary.json``). After a restart every job is listed again, finished results are served,
and jobs that were queued or running are marked interrupted and run again (with ``--cache`` the generations
already made are not made twice); a job interrupted ``MAX_RESUMES`` times is failed instead, so a job that
takes the server down cannot do it forever. Finished jobs older than ``job_keep_days`` and job folders without
a record are removed.

Budgets, so one job cannot hurt the others:

* **at upload** what the first bytes refuse (``formats.preflight``: unknown format, UTF-7, a PO header asking
  for 100 000 000 plural forms) is a 400, and no job is made;
* **before any work** the upload is parsed in a child process with an address-space limit
  (``job_max_memory_mb``) and the job's time budget: a file that needs more memory or time to read, that cannot
  be read, or that has more than ``job_max_units`` units fails there, and the server's own memory never sees
  it;
* **while running** the job stops at its next checkpoint (each engine chunk, each progress tick) when it is
  cancelled or past ``job_max_seconds``;
* ``job_workers`` jobs run at once, and the next job is taken from the key with the fewest running jobs, so
  one key's queue does not hold the others' back. Prompts go through the same batcher as interactive requests,
  in small chunks, so a large file does not stall CAT-tool lookups.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from tower_cat.errors import TowerCatError

from .service import NotFound, Overloaded, ServiceError
from .state import Caller, JobRecord, owner_id

log = logging.getLogger("tower_cat.server")

MAX_JOBS_PER_OWNER = 100        # kept per key; the oldest finished ones are dropped first
MAX_QUEUED_PER_OWNER = 20       # queued or running per key; then 429
MAX_RESUMES = 2                 # restarts a job survives before it is failed
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIVE = ("queued", "running", "cancelling")
FINISHED = ("done", "failed")


class JobStopped(Exception):
    """Raised at a job's checkpoint when it is cancelled or past its time budget."""


# ----------------------------------------------------------------------------------------------------------
# the engine as a job sees it


class EngineProxy:
    """What the pipeline sees as its engine: generation goes through the server's batcher (the worker thread
    owns the model) in small chunks, with the job's checkpoint between them; everything else (tokenizer, info,
    budget) is the engine's own."""

    def __init__(self, engine, batcher, chunk: int = 16, checkpoint: Callable[[], None] | None = None):
        self._engine = engine
        self._batcher = batcher
        self._chunk = max(1, chunk)
        self._checkpoint = checkpoint or (lambda: None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, prompts, options=None, *, sources=None):
        if options is None:
            from tower_cat.engine import GenerationOptions

            options = GenerationOptions()
        out = []
        for start in range(0, len(prompts), self._chunk):
            self._checkpoint()
            part = list(prompts[start:start + self._chunk])
            srcs = list(sources[start:start + self._chunk]) if sources is not None else [None] * len(part)
            for _ in range(600):  # wait out a full queue (interactive load) rather than fail the job
                try:
                    fut = self._batcher.submit(part, srcs, options)
                    break
                except Overloaded:
                    self._checkpoint()
                    time.sleep(0.1)
            else:
                raise ServiceError("the server stayed busy; the job gave up", status=503)
            out.extend(fut.result())
        return out


# ----------------------------------------------------------------------------------------------------------
# the pre-flight read: a child process with a memory and a time limit

_PREFLIGHT = r"""
import json, resource, sys
limit = int(sys.argv[2])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    from tower_cat import formats
    from tower_cat.errors import TowerCatError
    doc = formats.load(sys.argv[1])
    out = {"units": len(doc.units)}
except MemoryError:
    out = {"error": "memory"}
except TowerCatError as exc:
    out = {"error": "load", "message": str(exc)}
except Exception as exc:
    out = {"error": "load", "message": f"{type(exc).__name__}: {exc}"}
sys.stdout.write(json.dumps(out))
"""


def preflight(path: Path, *, memory_mb: int | None, seconds: float, max_units: int, name: str) -> int:
    """Read ``path`` in a child process under ``memory_mb`` of address space and ``seconds``; the number of
    units. TowerCatError (naming ``name``, not the job folder) when it cannot be read within the budget."""
    limit = (memory_mb or 0) * 1024 * 1024
    try:
        proc = subprocess.run([sys.executable, "-c", _PREFLIGHT, str(path), str(limit)], capture_output=True,
                              timeout=max(1.0, seconds), cwd=str(path.parent),
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if os.path.isabs(p))})
    except subprocess.TimeoutExpired:
        raise TowerCatError(f"{name}: reading the file took longer than the job's time budget "
                            f"({seconds:.0f} s)") from None
    try:
        out = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except ValueError:
        out = {}
    if out.get("error") == "memory" or (not out and proc.returncode != 0 and limit):
        raise TowerCatError(f"{name}: reading the file needs more than the job's memory budget "
                            f"({memory_mb} MB)")
    if out.get("error") == "load":
        raise TowerCatError(str(out.get("message", "")).replace(str(path), name))
    if "units" not in out:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TowerCatError(f"{name}: the file could not be read ({err[-1] if err else f'exit {proc.returncode}'})")
    units = int(out["units"])
    if units > max_units:
        raise TowerCatError(f"{name}: {units} units; a file job takes at most {max_units}")
    return units


# ----------------------------------------------------------------------------------------------------------
# jobs


class Job(JobRecord):
    """A job record with its paths."""

    @property
    def path(self) -> Path:
        return Path(self.workdir)

    @property
    def input(self) -> Path:
        return self.path / "in" / self.filename

    @property
    def output(self) -> Path:
        return self.path / "out" / self.filename

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def as_dict(self) -> dict:
        d = {"job_id": self.id, "task": self.task, "filename": self.filename, "status": self.status,
             "source_lang": self.source_lang, "target_lang": self.target_lang,
             "progress": {"done": self.done, "total": self.total,
                          "percent": round(100.0 * self.done / self.total, 1) if self.total else
                          (100.0 if self.status == "done" else 0.0)},
             "created": self.created, "started": self.started, "finished": self.finished, "error": self.error,
             "interrupted": self.interrupted}
        if self.totals is not None:
            d["totals"] = self.totals
        if self.status == "done":
            d["download"] = f"/v1/jobs/{self.id}/download"
        return d


class JobManager:
    """File jobs: records in the service's state, files under ``root``, ``workers`` threads running them."""

    def __init__(self, service, root: str | None = None):
        self.service = service
        config = service.config
        self.state = service.state
        self._tmp = None
        if not root and getattr(config, "state", None) and "://" not in str(config.state):
            root = str(Path(config.state).parent / "jobs")
        if root:
            self.root = Path(root).resolve()  # records hold absolute paths, whatever the working folder
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="tower-cat-jobs-")
            self.root = Path(self._tmp.name)
        self.node = f"{socket.gethostname()}:{self.root}"
        self.max_seconds = float(getattr(config, "job_max_seconds", 3600.0))
        self.max_units = int(getattr(config, "job_max_units", 200_000))
        self.max_memory_mb = getattr(config, "job_max_memory_mb", 2048)
        self.keep_seconds = float(getattr(config, "job_keep_days", 7.0)) * 86400.0
        self.jobs: dict[str, Job] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._running: dict[str, str] = {}        # job id -> owner
        self._last_start: dict[str, float] = {}   # owner -> when its last job started
        self._cond = threading.Condition()
        self._closed = False
        self.events: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)  # (job id, status)
        self._recover()
        self._threads = [threading.Thread(target=self._work, name=f"tower-cat-job-{i}", daemon=True)
                         for i in range(max(1, int(getattr(config, "job_workers", 2))))]
        for t in self._threads:
            t.start()

    # -- durability -------------------------------------------------------------------------------------

    def _put(self, job: Job) -> None:
        self.state.put_job(job)

    def _recover(self) -> None:
        """Load the jobs of an earlier run: interrupted ones are queued again (or failed after MAX_RESUMES),
        expired ones and folders without a record removed."""
        now = time.time()
        records = self.state.jobs()
        for rec in records:
            job = Job.load(rec.dump())
            if job.node and job.node != self.node:  # another server's job (a state shared over PostgreSQL)
                continue
            if job.status in FINISHED and job.finished and now - job.finished > self.keep_seconds:
                self._remove(job)
                continue
            if job.status == "cancelling":
                self._remove(job)
                continue
            if not job.path.is_dir():
                if job.status not in FINISHED or job.status == "done":
                    job.status, job.error = "failed", "the job's files are gone (its folder was removed)"
                    job.finished = job.finished or now
                    self._put(job)
            elif job.status == "running":  # the server died during it
                job.interrupted += 1
                if job.interrupted > MAX_RESUMES:
                    job.status = "failed"
                    job.error = (f"interrupted by {job.interrupted} server restarts; not resumed again "
                                 "(delete it and upload the file again)")
                    job.finished = now
                else:
                    job.status, job.done = "queued", 0
                    log.info("file job %s was interrupted by a restart; it runs again", job.id)
                self._put(job)
            self.jobs[job.id] = job
        known = {r.id for r in records}
        for folder in self.root.iterdir():
            if folder.is_dir() and _JOB_ID.match(folder.name) and folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)

    def _remove(self, job: Job) -> None:
        self.state.delete_job(job.id)
        self.jobs.pop(job.id, None)
        self._cancel.pop(job.id, None)
        if job.path.parent == self.root:  # never outside the jobs folder, whatever the record says
            shutil.rmtree(job.path, ignore_errors=True)

    def _expire(self) -> None:
        now = time.time()
        for job in [j for j in self.jobs.values() if j.status in FINISHED]:
            if job.finished and now - job.finished > self.keep_seconds:
                self._remove(job)

    def _event(self, job: Job) -> None:
        with self._cond:
            self.events.append((job.id, job.status))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds after a job changed state (tests, the cancel endpoint)."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # -- the API ----------------------------------------------------------------------------------------

    def create(self, filename: str, data: bytes, *, task: str, source_lang: str | None, target_lang: str,
               options: dict, glossary_id: str | None, caller: Caller | None = None) -> Job:
        caller = caller or Caller("", admin=True)
        if task not in ("translate", "post-edit"):
            raise ServiceError("task must be translate or post-edit")
        if glossary_id:
            self.service.glossaries.get(glossary_id, caller)
        tgt = self.service.resolve(target_lang, "target")
        src = self.service.resolve(source_lang, "source") if source_lang else None
        with self._cond:
            self._expire()
            mine = [j for j in self.jobs.values() if j.owner == caller.owner]
            if sum(j.status in ACTIVE for j in mine) >= MAX_QUEUED_PER_OWNER:
                raise Overloaded(f"{MAX_QUEUED_PER_OWNER} file jobs of this key are queued or running; "
                                 "retry when one has finished")
            finished = sorted((j for j in mine if j.status in FINISHED), key=lambda j: j.finished or 0)
            for j in finished[: max(0, len(mine) - MAX_JOBS_PER_OWNER + 1)]:
                self._remove(j)
            jid = uuid.uuid4().hex
            name = _SAFE_NAME.sub("_", Path(filename or "upload").name).strip("._")[:200] or "upload"
            workdir = self.root / jid
            (workdir / "in").mkdir(parents=True)
            (workdir / "out").mkdir()
            job = Job(jid, caller.owner, task, name, str(workdir), src, tgt, dict(options), glossary_id,
                      node=self.node)
            try:
                job.input.write_bytes(data)
                _refuse_early(job)
                self._put(job)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            self.jobs[jid] = job
            self._cond.notify_all()
        return job

    def _others(self) -> list[Job]:
        """Jobs of the other servers that share this state (PostgreSQL); none for a state of our own."""
        if not getattr(self.state, "shared", False):
            return []
        return [Job.load(r.dump()) for r in self.state.jobs() if r.node and r.node != self.node]

    def get(self, jid: str, caller: Caller | None = None) -> Job:
        job = self.jobs.get(jid) or next((j for j in self._others() if j.id == jid), None)
        if job is None or (caller is not None and not caller.sees(job.owner)):
            raise NotFound("job not found")
        return job

    def list(self, caller: Caller | None = None) -> list[Job]:
        return [j for j in [*self.jobs.values(), *self._others()] if caller is None or caller.sees(j.owner)]

    def summary(self, job: Job) -> dict:
        if job.status not in FINISHED or not job.summary_path.is_file():
            raise ServiceError(f"the job is {job.status}; no summary yet", status=409)
        return json.loads(job.summary_path.read_text(encoding="utf-8"))

    def delete(self, jid: str, caller: Caller | None = None, wait: float = 5.0) -> bool:
        """Delete a job; a queued or running one is cancelled first. True when it is gone, False while a
        running job is still stopping (it is removed as soon as it has)."""
        with self._cond:
            job = self.get(jid, caller)
            if jid not in self.jobs:
                raise ServiceError(f"the job runs on another server ({job.node}); delete it there", status=409)
            if job.status == "queued":
                self._remove(job)
                self._event(job)
                return True
            if job.status in ("running", "cancelling"):
                job.status = "cancelling"
                self._put(job)
                self._cancel.setdefault(jid, threading.Event()).set()
                self._event(job)
            else:
                self._remove(job)
                return True
        return self.wait_for(lambda: jid not in self.jobs, wait)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for ev in self._cancel.values():
                ev.set()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- the workers ------------------------------------------------------------------------------------

    def _next(self) -> Job | None:
        """The oldest queued job of the key with the fewest running jobs, among those the key that waited
        longest since its last start (fair between keys: one key's queue does not hold the others back)."""
        queued = [j for j in self.jobs.values() if j.status == "queued"]
        if not queued:
            return None
        running: dict[str, int] = {}
        for owner in self._running.values():
            running[owner] = running.get(owner, 0) + 1
        return min(queued, key=lambda j: (running.get(j.owner, 0), self._last_start.get(j.owner, 0.0), j.created))

    def _work(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._closed and (job := self._next()) is None:
                    if not self._cond.wait(timeout=600):  # idle: expired jobs go even without new uploads
                        self._expire()
                if self._closed:
                    return
                job.status, job.started, job.attempts = "running", time.time(), job.attempts + 1
                job.error = None
                self._running[job.id] = job.owner
                self._last_start[job.owner] = time.monotonic()
                self._cancel[job.id] = threading.Event()
                self._put(job)
            self._event(job)
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running.pop(job.id, None)
                    if job.status == "cancelling":
                        self._remove(job)
                    else:
                        self._put(job)
                self._event(job)

    def _caller(self, job: Job) -> Caller:
        """The job's owner as a caller: the admin key's jobs see what the admin sees (and use --tm)."""
        admin_key = getattr(self.service.config, "admin_key", None)
        return Caller(job.owner, admin=not job.owner or (bool(admin_key) and job.owner == owner_id(admin_key)))

    def _glossary(self, job: Job):
        caller = self._caller(job)
        gids = [job.glossary_id] if job.glossary_id else [g.glossary_id for g in self.service.glossaries.builtins()]
        if not gids:
            return None
        from tower_cat.terminology import Glossary

        concepts = []
        for gid in gids:
            g = self.service.glossaries.get(gid, caller)
            if g.builtin is not None:
                concepts.extend(g.builtin.concepts)
            for d in g.dictionaries:
                concepts.extend(d.glossary.concepts)
        return Glossary(concepts)

    def _tm(self, job: Job):
        memories = getattr(self.service, "memories", None)
        if memories is not None:
            return memories.for_caller(self._caller(job))
        return self.service.tm

    def _run(self, job: Job) -> None:
        from tower_cat.pipeline import PipelineOptions, run_files

        cancel = self._cancel[job.id]
        deadline = time.monotonic() + self.max_seconds

        def checkpoint() -> None:
            if cancel.is_set():
                raise JobStopped("cancelled")
            if time.monotonic() > deadline:
                raise JobStopped(f"the job ran past its time budget ({self.max_seconds:.0f} s) and was stopped")

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total
            checkpoint()

        try:
            job.total = preflight(job.input, memory_mb=self.max_memory_mb, seconds=self.max_seconds,
                                  max_units=self.max_units, name=job.filename)
            checkpoint()
            service = self.service
            opts = PipelineOptions(source_lang=job.source_lang, target_lang=job.target_lang,
                                   overwrite=bool(job.options.get("overwrite")),
                                   few_shot=int(job.options.get("few_shot", service.config.tm_examples)),
                                   max_new_tokens=service.config.max_new_tokens)
            engine = EngineProxy(service.engine, service.batcher, chunk=service.config.max_batch_prompts // 4 or 1,
                                 checkpoint=checkpoint)
            job.output.unlink(missing_ok=True)
            summary = run_files(job.task, [job.input], [job.output], engine,
                                tm=self._tm(job) if job.task == "translate" else None, glossary=self._glossary(job),
                                options=opts, progress=progress)
            data = summary.as_dict()
            _write_json(job.summary_path, data)
            job.totals = data.get("totals")
            errors = [f.error for f in summary.files if f.error]
            if errors:
                job.status, job.error = "failed", errors[0].replace(str(job.input), job.filename).replace(
                    str(job.output), job.filename)
            else:
                job.status = "done"
        except JobStopped as exc:
            if self._closed and job.status == "running":  # the server stops: the job runs again on restart
                job.status, job.done = "queued", 0
                return
            if job.status != "cancelling":
                job.status, job.error = "failed", str(exc)
        except TowerCatError as exc:
            job.status, job.error = "failed", str(exc).replace(str(job.input), job.filename)
        except Exception as exc:  # noqa: BLE001 - reported to the client
            log.exception("file job %s failed", job.id)
            job.status, job.error = "failed", str(exc) or type(exc).__name__
        if job.status in FINISHED:
            job.finished = time.time()


def _refuse_early(job: Job) -> None:
    """What the first bytes already refuse (a format nobody reads, an encoding that is not ASCII-compatible, a PO
    asking for absurd plural counts) is a 400 at upload, before a job exists."""
    from tower_cat import formats

    try:
        formats.preflight(job.input)
    except TowerCatError as exc:
        raise ServiceError(str(exc).replace(str(job.input), job.filename)) from None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def manager(request: Request) -> JobManager:
    service = request.app.state.service
    if service.jobs is None:
        with _MANAGER_LOCK:
            if service.jobs is None:
                service.jobs = JobManager(service, service.config.jobs_dir)
    return service.jobs


_MANAGER_LOCK = threading.Lock()


def add_routes(r: APIRouter) -> None:
    from .http import OURS, bearer_key, read_params

    def begin(request: Request) -> Caller:
        request.state.protocol = OURS
        service = request.app.state.service
        return service.caller(service.check_key(bearer_key(request)))

    @r.post("/files", status_code=202, summary="Upload a file (XLIFF/SDLXLIFF/MQXLIFF/PO/TMX) to translate")
    async def upload(request: Request):
        caller = begin(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            raise ServiceError("send the file as multipart/form-data (field 'file')", status=415)
        params = await read_params(request)
        upload = params.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise ServiceError("send the file as multipart/form-data field 'file'")
        data = await upload.read()
        if not params.get("target_lang"):
            raise ServiceError("target_lang is required")
        options = {"overwrite": params.flag("overwrite")}
        if params.get("few_shot") is not None:
            try:
                options["few_shot"] = max(0, min(10, int(params.get("few_shot"))))
            except ValueError:
                raise ServiceError("few_shot must be a number") from None
        import asyncio

        job = await asyncio.to_thread(  # writing a 50 MB upload must not hold up the event loop
            manager(request).create, upload.filename or "upload", data, task=str(params.get("task") or "translate"),
            source_lang=params.get("source_lang") or None, target_lang=str(params.get("target_lang")),
            options=options, glossary_id=params.get("glossary_id") or None, caller=caller)
        return JSONResponse(job.as_dict(), status_code=202)

    @r.get("/jobs", summary="List file jobs (this key's; every key's for the admin key)")
    async def list_jobs(request: Request):
        caller = begin(request)
        return {"jobs": [j.as_dict() for j in manager(request).list(caller)]}

    @r.get("/jobs/{job_id}", summary="Job status and progress")
    async def job_status(job_id: str, request: Request):
        caller = begin(request)
        return manager(request).get(job_id, caller).as_dict()

    @r.get("/jobs/{job_id}/summary", summary="The job's full JSON summary (per-unit results)")
    async def job_summary(job_id: str, request: Request):
        caller = begin(request)
        jobs = manager(request)
        return jobs.summary(jobs.get(job_id, caller))

    @r.get("/jobs/{job_id}/download", summary="Download the translated file")
    async def download(job_id: str, request: Request):
        caller = begin(request)
        jobs = manager(request)
        job = jobs.get(job_id, caller)
        if job.status == "done" and not job.output.is_file() and job.node != jobs.node:
            raise ServiceError(f"the job's file is on another server ({job.node}); download it there", status=409)
        if job.status != "done" or not job.output.is_file():
            raise ServiceError(f"the job is {job.status}; nothing to download yet", status=409)
        return FileResponse(job.output, filename=job.filename, media_type="application/octet-stream")

    @r.delete("/jobs/{job_id}", summary="Delete a job and its files; a queued or running job is cancelled")
    async def delete(job_id: str, request: Request):
        import asyncio

        caller = begin(request)
        jobs = manager(request)
        if await asyncio.to_thread(jobs.delete, job_id, caller):
            return Response(status_code=204)
        return JSONResponse({"job_id": job_id, "status": "cancelling"}, status_code=202)
