"""A remote OpenAI-compatible inference server (vLLM, SGLang, TGI, llama.cpp) as an Engine backend.

Models that need tensor parallelism (Tower+ 72B) or the exact Gemma 2 (soft-capping, sliding window) run on a
server built for that; tower-cat keeps everything that knows files, TMs, terms, tags and QA. The prompt is
rendered here exactly as for a local model — the model's own chat template, one BOS, from the tokenizer files
in the local model folder — and sent as **token ids** to ``POST /v1/completions`` (vLLM, SGLang and llama.cpp
accept token-id prompts); a server that refuses them gets the rendered text (``prompt_format="text"``, or
found out on the first 400 and remembered). The family's end tokens go as ``stop``; ``logprobs`` come back for
log-prob QE and n-best ranking. The server batches (continuous batching), so this backend only bounds how many
requests are in flight, retries 429/5xx/timeouts/refused connections with exponential backoff, and fails at
once, with the server's own message, on any other 4xx.

What comes back is text: it is re-tokenized with the local tokenizer into the Engine's token lists (the
generation cache stores those), and a completion that stopped on an end token gets that end token appended, so
the Engine tells finished from truncated output the same way as for a local model.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from tower_cat.engine import _RawHyp, _tokens_to_ids
from tower_cat.errors import ModelError

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RemoteEngineError(ModelError):
    """The inference server refused a request or could not be reached (after the retries)."""


@dataclass
class RemoteOptions:
    """How to talk to the server; one place for every knob (``Engine.load(..., backend="openai")``)."""

    endpoint: str                      # base URL, with or without /v1
    api_key: str | None = None
    served_model: str | None = None    # the server's model name; default: the only one /v1/models lists
    revision: str | None = None        # part of the cache key; default: the server's model id + root/created
    max_concurrency: int = 16          # requests in flight
    timeout: float = 120.0             # seconds per request
    retries: int = 5                   # attempts after the first, for 429/5xx/timeouts/refused connections
    backoff: float = 0.5               # first delay in seconds, doubled each time (with jitter), capped at 30 s
    prompt_format: str = "auto"        # "tokens" | "text" | "auto" (tokens, text when the server refuses ids)

    @property
    def base_url(self) -> str:
        url = self.endpoint.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"


class OpenAICompletionsBackend:
    """The Engine backend interface (generate / score / stream) over ``/v1/completions``."""

    name = "openai"

    def __init__(self, options: RemoteOptions, tokenizer, *, seed: int | None = None):
        import httpx

        self.options = options
        self.tokenizer = tokenizer
        self.seed = seed
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        limits = httpx.Limits(max_connections=options.max_concurrency,
                              max_keepalive_connections=options.max_concurrency)
        self._client = httpx.Client(base_url=options.base_url, headers=headers, timeout=options.timeout,
                                    limits=limits)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=options.max_concurrency,
                                                           thread_name_prefix="tower-cat-remote")
        self._text_prompts = options.prompt_format == "text"
        self._lock = threading.Lock()
        self.parallel = options.max_concurrency
        self.requests = 0  # counters for tests and the job summary
        self.retried = 0
        self.model, self.revision = self._discover()
        if options.prompt_format == "auto":
            self._text_prompts = not self._takes_token_ids()

    # -- the server ---------------------------------------------------------------------------------------

    def _discover(self) -> tuple[str, str]:
        """The served model's name and a revision string for the cache key."""
        try:
            data = self._request("GET", "/models")
        except _ClientError as exc:  # a wrong key, a wrong URL: the server's own words
            raise RemoteEngineError(f"{self.options.base_url}/models refused the request (HTTP {exc.status}): "
                                    f"{exc.message}", hint="check the endpoint URL and its API key",
                                    param="endpoint") from None
        models = data.get("data") if isinstance(data, dict) else None
        if not isinstance(models, list) or not models:
            raise RemoteEngineError(f"{self.options.base_url}/models lists no model",
                                    hint="start the inference server with a model")
        ids = [m.get("id") for m in models if isinstance(m, dict)]
        name = self.options.served_model
        if name is None:
            if len(ids) != 1:
                raise RemoteEngineError(f"the server serves {len(ids)} models ({', '.join(map(str, ids))})",
                                        hint="name one with served_model=", param="served_model")
            name = ids[0]
        elif name not in ids:
            raise RemoteEngineError(f"the server does not serve {name!r}; it serves {', '.join(map(str, ids))}")
        entry = next(m for m in models if isinstance(m, dict) and m.get("id") == name)
        revision = self.options.revision or json.dumps(
            {k: entry.get(k) for k in ("id", "root", "owned_by", "max_model_len") if entry.get(k) is not None},
            sort_keys=True)
        return str(name), revision

    def _takes_token_ids(self) -> bool:
        """One cheap probe: does ``/completions`` take a token-id prompt? (vLLM and SGLang do; llama-cpp-python's
        server answers a validation error, 500 rather than 400, so any error status means no.)"""
        first = self.tokenizer.bos_token_id
        if first is None:
            first = self.tokenizer.convert_tokens_to_ids(self.tokenizer.eos_token) or 0
        try:
            self._request("POST", "/completions", {"model": self.model, "prompt": [int(first)], "max_tokens": 1,
                                                   "temperature": 0.0}, retries=0)
        except (_ClientError, RemoteEngineError) as exc:
            if isinstance(exc, RemoteEngineError) and "HTTP" not in str(exc):
                raise  # the server is not reachable at all: say so now
            return False
        return True

    @property
    def fingerprint(self) -> str:
        raw = json.dumps([self.options.base_url, self.model, self.revision])
        return "openai:" + hashlib.sha256(raw.encode()).hexdigest()[:32]

    def _request(self, method: str, path: str, payload: dict | None = None, *, retries: int | None = None) -> Any:
        import httpx

        retries = self.options.retries if retries is None else retries
        delay = self.options.backoff
        for attempt in range(retries + 1):
            try:
                with self._lock:
                    self.requests += 1
                r = self._client.request(method, path, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                status = None
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError:
                        raise RemoteEngineError(f"{self.options.base_url}{path} answered {r.status_code} "
                                                f"with a body that is not JSON") from None
                status, problem = r.status_code, _server_message(r)
                if status not in RETRY_STATUSES:
                    raise _ClientError(status, problem)
            if attempt < retries:
                with self._lock:
                    self.retried += 1
                time.sleep(min(30.0, delay) * (0.5 + random.random()))
                delay *= 2
        where = f"{self.options.base_url}{path}"
        raise RemoteEngineError(f"{where}: {problem}" + (f" (HTTP {status})" if status else "") +
                                f", still failing after {retries + 1} attempt{'s' if retries else ''}",
                                hint="check that the inference server is running and reachable; the job can be "
                                     "run again and resumes from the generation cache")

    def _completion(self, payload: dict) -> dict:
        try:
            return self._request("POST", "/completions", payload)
        except _ClientError as exc:
            raise RemoteEngineError(f"{self.options.base_url}/completions refused the request (HTTP "
                                    f"{exc.status}): {exc.message}") from None

    # -- prompts ------------------------------------------------------------------------------------------

    def _prompt(self, rendered) -> Any:
        return self._text(list(rendered.ids)) if self._text_prompts else list(rendered.ids)

    def _text(self, ids: list[int]) -> str:
        """The prompt as text for servers that tokenize themselves: special tokens written out (servers parse
        them back), the leading BOS left off (servers add the model's BOS, so it stays exactly one)."""
        if ids and ids[0] == self.tokenizer.bos_token_id:
            ids = ids[1:]
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _complete(self, payload: dict, rendered) -> dict:
        return self._completion(dict(payload, prompt=self._prompt(rendered)))

    def _payload(self, opts, max_new: int, end_tokens: list[str], n: int) -> dict:
        payload: dict[str, Any] = {"model": self.model, "max_tokens": max_new, "n": n, "stop": list(end_tokens),
                                   "logprobs": 1, "echo": False}
        if opts.sampling:
            payload.update(temperature=opts.sampling_temperature, top_p=opts.sampling_topp)
            if opts.sampling_topk and opts.sampling_topk > 1:
                payload["top_k"] = opts.sampling_topk
            if self.seed is not None:
                payload["seed"] = self.seed
        else:
            payload.update(temperature=0.0, top_p=1.0)
            if n > 1:  # greedy n-best: the server has no beam search over this API; sample the rest
                payload.update(temperature=0.7)
        # always sent, 1.0 = off: vLLM/SGLang read repetition_penalty, llama.cpp's servers repeat_penalty (whose
        # default there is 1.1, which would make greedy output differ from the same model run directly)
        payload["repetition_penalty"] = payload["repeat_penalty"] = opts.repetition_penalty or 1.0
        if opts.min_new_tokens:
            payload["min_tokens"] = min(opts.min_new_tokens, max_new)
        return payload

    def _hyps(self, data: dict, end_tokens: list[str], n: int) -> list[_RawHyp]:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) < n:
            raise RemoteEngineError(f"the server answered {len(choices)} completion(s) where {n} were asked")
        out = []
        for c in choices[:n]:
            text = c.get("text") or ""
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
            tokens = list(self.tokenizer.convert_ids_to_tokens(ids))
            if c.get("finish_reason") == "stop" and end_tokens:
                stop = c.get("stop_reason")
                tokens.append(stop if isinstance(stop, str) and stop in end_tokens else end_tokens[0])
            lp = (c.get("logprobs") or {}).get("token_logprobs") or []
            lp = [x for x in lp if isinstance(x, (int, float))]
            out.append(_RawHyp(tokens, sum(lp) / len(lp) if lp else None))
        return out

    # -- the backend interface ----------------------------------------------------------------------------

    def generate(self, batches: list[list[Any]], opts, max_news: list[int], end_tokens: list[str],
                 max_batch_tokens: int) -> Iterator[list[list[_RawHyp]]]:
        """Every prompt is one request; all of them are queued at once (at most ``max_concurrency`` in
        flight) and batches are yielded in order as they complete."""
        n = opts.num_hypotheses
        futures = [[self._pool.submit(self._one, r, self._payload(opts, max_new, end_tokens, n), end_tokens, n)
                    for r in batch] for batch, max_new in zip(batches, max_news)]
        try:
            for batch_futures in futures:
                yield [f.result() for f in batch_futures]
        finally:
            for batch_futures in futures:
                for f in batch_futures:
                    f.cancel()

    def _one(self, rendered, payload: dict, end_tokens: list[str], n: int) -> list[_RawHyp]:
        return self._hyps(self._complete(payload, rendered), end_tokens, n)

    def score(self, batch: list[list[str]]) -> list[list[float]]:
        """Log-probs of every token after the first (``echo`` + ``logprobs``, no new tokens)."""
        out = []
        for tokens in batch:
            ids = _tokens_to_ids(self.tokenizer, tokens)
            # max_tokens=1: some servers read 0 as "no limit"; the one new token is sliced off below
            payload = {"model": self.model, "prompt": self._text(ids) if self._text_prompts else ids,
                       "max_tokens": 1, "echo": True, "logprobs": 0, "temperature": 0.0}
            try:
                data = self._request("POST", "/completions", payload)
            except _ClientError as exc:
                raise RemoteEngineError(f"the server cannot score token sequences (echo + logprobs): HTTP "
                                        f"{exc.status}: {exc.message}",
                                        hint="log-prob QE needs a server that returns prompt log-probs "
                                             "(vLLM; llama.cpp started with logits_all)") from None
            choice = (data.get("choices") or [{}])[0]
            lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
            values = [float(x) for x in lps[1:len(ids)] if isinstance(x, (int, float))]
            if len(values) != len(ids) - 1:
                raise RemoteEngineError(f"the server returned {len(values)} prompt log-probs for {len(ids) - 1} "
                                        "tokens", hint="log-prob QE needs a server that echoes prompt log-probs")
            out.append(values)
        return out

    def stream(self, tokens: Sequence[str], opts, max_new: int,
               end_tokens: list[str]) -> Iterator[tuple[str, int, float | None]]:
        """Token events from a server-sent-event completion stream (re-tokenized per text delta)."""
        import httpx

        ids = _tokens_to_ids(self.tokenizer, tokens)
        payload = dict(self._payload(opts, max_new, end_tokens, 1), stream=True,
                       prompt=ids if not self._text_prompts else self._text(ids))
        text = ""
        emitted: list[int] = []
        try:
            with self._client.stream("POST", "/completions", json=payload) as r:
                if r.status_code >= 400:
                    r.read()
                    raise RemoteEngineError(f"{self.options.base_url}/completions refused the stream (HTTP "
                                            f"{r.status_code}): {_server_message(r)}")
                finish = None
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    choice = (json.loads(data).get("choices") or [{}])[0]
                    text += choice.get("text") or ""
                    finish = choice.get("finish_reason") or finish
                    new = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                    # emit the tokens that are settled (all but the last, which the next delta may extend)
                    while len(emitted) < len(new) - 1 and new[:len(emitted)] == emitted:
                        tid = new[len(emitted)]
                        emitted.append(tid)
                        yield self.tokenizer.convert_ids_to_tokens(tid), tid, None
        except httpx.HTTPError as exc:
            raise RemoteEngineError(f"{self.options.base_url}/completions stream broke: {exc}") from None
        new = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        for tid in new[len(emitted):]:
            yield self.tokenizer.convert_ids_to_tokens(tid), tid, None
        if finish == "stop" and end_tokens:
            end_id = self.tokenizer.convert_tokens_to_ids(end_tokens[0])
            yield end_tokens[0], end_id if isinstance(end_id, int) else -1, None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


class _ClientError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _server_message(response) -> str:
    try:
        data = response.json()
    except ValueError:
        return (response.text or "").strip()[:300] or response.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or json.dumps(err)
        if err is not None:
            return str(err)[:300]
    return json.dumps(data)[:300]
