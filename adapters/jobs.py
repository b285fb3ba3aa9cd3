"""File jobs under ``/v1``: upload an XLIFF / SDLXLIFF / MQXLIFF / PO / TMX file, poll the job, download the
translated file.

``POST /v1/files`` (multipart: ``file``, ``target_lang``, optional ``source_lang``, ``task`` =
``translate``|``post-edit``, ``overwrite``, ``few_shot``, ``glossary_id``) answers ``202`` with a job id;
``GET /v1/jobs/{id}`` gives status (queued, running, done, failed) and progress (units done / total);
``GET /v1/jobs/{id}/download`` returns the file written by ``tower_cat.pipeline.run_files`` (the same job as
``tower-cat translate``: TM leverage, few-shot, glossary, codes restored, states and provenance written);
``GET /v1/jobs/{id}/summary`` the job's JSON summary. Jobs run one at a time in a background thread; their
prompts go through the same batcher as interactive requests, in small chunks, so a large file does not stall
CAT-tool lookups for its whole duration. At most ``MAX_JOBS`` jobs are kept; the oldest finished ones (and
their files) are dropped first.
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from .service import NotFound, Overloaded, ServiceError

MAX_JOBS = 100
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class EngineProxy:
    """What the pipeline sees as its engine: generation goes through the server's batcher (the worker thread
    owns the model); everything else (tokenizer, info, budget) is the engine's own."""

    def __init__(self, engine, batcher, chunk: int = 16):
        self._engine = engine
        self._batcher = batcher
        self._chunk = max(1, chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, prompts, options=None, *, sources=None):
        if options is None:
            from tower_cat.engine import GenerationOptions

            options = GenerationOptions()
        out = []
        for start in range(0, len(prompts), self._chunk):
            part = list(prompts[start:start + self._chunk])
            srcs = list(sources[start:start + self._chunk]) if sources is not None else [None] * len(part)
            for attempt in range(600):  # wait out a full queue (interactive load) rather than fail the job
                try:
                    fut = self._batcher.submit(part, srcs, options)
                    break
                except Overloaded:
                    time.sleep(0.1)
            else:
                raise ServiceError("the server stayed busy; the job gave up", status=503)
            out.extend(fut.result())
        return out


@dataclass
class Job:
    id: str
    task: str
    filename: str
    workdir: Path
    input: Path
    output: Path
    source_lang: str | None
    target_lang: str
    options: dict
    glossary_id: str | None = None
    status: str = "queued"
    done: int = 0
    total: int = 0
    error: str | None = None
    summary: dict | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def as_dict(self) -> dict:
        d = {"job_id": self.id, "task": self.task, "filename": self.filename, "status": self.status,
             "source_lang": self.source_lang, "target_lang": self.target_lang,
             "progress": {"done": self.done, "total": self.total,
                          "percent": round(100.0 * self.done / self.total, 1) if self.total else
                          (100.0 if self.status == "done" else 0.0)},
             "created": self.created, "started": self.started, "finished": self.finished, "error": self.error}
        if self.summary is not None:
            d["totals"] = self.summary.get("totals")
        if self.status == "done":
            d["download"] = f"/v1/jobs/{self.id}/download"
        return d


class JobManager:
    def __init__(self, service, root: str | None = None):
        self.service = service
        self._tmp = None
        if root:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="tower-cat-jobs-")
            self.root = Path(self._tmp.name)
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tower-cat-job")

    def create(self, filename: str, data: bytes, *, task: str, source_lang: str | None, target_lang: str,
               options: dict, glossary_id: str | None) -> Job:
        if task not in ("translate", "post-edit"):
            raise ServiceError("task must be translate or post-edit")
        if glossary_id:
            self.service.glossaries.get(glossary_id)
        tgt = self.service.resolve(target_lang, "target")
        src = self.service.resolve(source_lang, "source") if source_lang else None
        self._evict()
        jid = uuid.uuid4().hex
        name = _SAFE_NAME.sub("_", Path(filename or "upload").name).strip("._") or "upload"
        workdir = self.root / jid
        (workdir / "in").mkdir(parents=True)
        (workdir / "out").mkdir()
        path = workdir / "in" / name
        path.write_bytes(data)
        job = Job(jid, task, name, workdir, path, workdir / "out" / name, src, tgt, options, glossary_id)
        with self._lock:
            self.jobs[jid] = job
        self._pool.submit(self._run, job)
        return job

    def _evict(self) -> None:
        with self._lock:
            if len(self.jobs) < MAX_JOBS:
                return
            finished = sorted((j for j in self.jobs.values() if j.status in ("done", "failed")),
                              key=lambda j: j.finished or 0)
            if not finished:
                raise ServiceError("too many file jobs running; retry later", status=503)
            for j in finished[: len(self.jobs) - MAX_JOBS + 1]:
                self.jobs.pop(j.id, None)
                shutil.rmtree(j.workdir, ignore_errors=True)

    def _glossary(self, job: Job):
        gids = [job.glossary_id] if job.glossary_id else [g.glossary_id for g in self.service.glossaries.builtins()]
        if not gids:
            return None
        from tower_cat.terminology import Glossary

        concepts = []
        for gid in gids:
            g = self.service.glossaries.get(gid)
            if g.builtin is not None:
                concepts.extend(g.builtin.concepts)
            for d in g.dictionaries:
                concepts.extend(d.glossary.concepts)
        return Glossary(concepts)

    def _run(self, job: Job) -> None:
        from tower_cat.pipeline import PipelineOptions, run_files

        job.status = "running"
        job.started = time.time()

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            service = self.service
            opts = PipelineOptions(source_lang=job.source_lang, target_lang=job.target_lang,
                                   overwrite=bool(job.options.get("overwrite")),
                                   few_shot=int(job.options.get("few_shot", service.config.tm_examples)),
                                   max_new_tokens=service.config.max_new_tokens)
            engine = EngineProxy(service.engine, service.batcher, chunk=service.config.max_batch_prompts // 4 or 1)
            summary = run_files(job.task, [job.input], [job.output], engine,
                                tm=service.tm if job.task == "translate" else None, glossary=self._glossary(job),
                                options=opts, progress=progress)
            job.summary = summary.as_dict()
            errors = [f.error for f in summary.files if f.error]
            if errors:
                job.status, job.error = "failed", errors[0]
            else:
                job.status = "done"
        except Exception as exc:  # noqa: BLE001 - reported to the client
            job.status, job.error = "failed", str(exc) or type(exc).__name__
        finally:
            job.finished = time.time()

    def get(self, jid: str) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise NotFound("job not found")
        return job

    def delete(self, jid: str) -> None:
        job = self.get(jid)
        if job.status in ("queued", "running"):
            raise ServiceError("the job is still running", status=409)
        with self._lock:
            self.jobs.pop(jid, None)
        shutil.rmtree(job.workdir, ignore_errors=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._tmp is not None:
            self._tmp.cleanup()


def manager(request: Request) -> JobManager:
    service = request.app.state.service
    if service.jobs is None:
        service.jobs = JobManager(service, service.config.jobs_dir)
    return service.jobs


def add_routes(r: APIRouter) -> None:
    from .http import OURS, bearer_key, read_params

    @r.post("/files", status_code=202, summary="Upload a file (XLIFF/SDLXLIFF/MQXLIFF/PO/TMX) to translate")
    async def upload(request: Request):
        request.state.protocol = OURS
        service = request.app.state.service
        service.check_key(bearer_key(request))
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
        job = manager(request).create(upload.filename or "upload", data, task=str(params.get("task") or "translate"),
                                      source_lang=params.get("source_lang") or None,
                                      target_lang=str(params.get("target_lang")), options=options,
                                      glossary_id=params.get("glossary_id") or None)
        return JSONResponse(job.as_dict(), status_code=202)

    @r.get("/jobs", summary="List file jobs")
    async def list_jobs(request: Request):
        request.state.protocol = OURS
        request.app.state.service.check_key(bearer_key(request))
        return {"jobs": [j.as_dict() for j in manager(request).jobs.values()]}

    @r.get("/jobs/{job_id}", summary="Job status and progress")
    async def job_status(job_id: str, request: Request):
        request.state.protocol = OURS
        request.app.state.service.check_key(bearer_key(request))
        return manager(request).get(job_id).as_dict()

    @r.get("/jobs/{job_id}/summary", summary="The job's full JSON summary (per-unit results)")
    async def job_summary(job_id: str, request: Request):
        request.state.protocol = OURS
        request.app.state.service.check_key(bearer_key(request))
        job = manager(request).get(job_id)
        if job.summary is None:
            raise ServiceError(f"the job is {job.status}; no summary yet", status=409)
        return job.summary

    @r.get("/jobs/{job_id}/download", summary="Download the translated file")
    async def download(job_id: str, request: Request):
        request.state.protocol = OURS
        request.app.state.service.check_key(bearer_key(request))
        job = manager(request).get(job_id)
        if job.status != "done" or not job.output.is_file():
            raise ServiceError(f"the job is {job.status}; nothing to download yet", status=409)
        return FileResponse(job.output, filename=job.filename, media_type="application/octet-stream")

    @r.delete("/jobs/{job_id}", summary="Delete a finished job and its files")
    async def delete(job_id: str, request: Request):
        request.state.protocol = OURS
        request.app.state.service.check_key(bearer_key(request))
        manager(request).delete(job_id)
        return Response(status_code=204)
