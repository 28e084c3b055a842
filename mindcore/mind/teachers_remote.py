"""Teacher backends for `mindcore synthesize` beyond a local HF model: any OpenAI-compatible server
(vLLM serve, SGLang, llama.cpp server, TGI) by URL, and vLLM's offline ``LLM`` (optional import).

Each returns ``generate(prompts) -> texts`` like ``synthesize.hf_generate_fn``. The server client is
stdlib only (urllib + threads): ``concurrency`` requests in flight, each with a timeout, retried with
exponential backoff on connection errors, timeouts, 429 and 5xx; a 4xx or a malformed answer fails at
once (retrying cannot fix it). Failures raise ``TeacherError`` naming the URL and the fix.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence


class TeacherError(RuntimeError):
    """The teacher could not produce text for a prompt; the message says what to fix."""


def _post(url, body, timeout_s, api_key):
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return resp.read()


def _text(raw: bytes, url: str, chat: bool) -> str:
    try:
        obj = json.loads(raw)
        choice = obj["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise TeacherError(f"teacher server {url} returned a malformed answer ({type(e).__name__}: {e}; "
                           f"first bytes {raw[:120]!r}); point --teacher-url at an OpenAI-compatible server "
                           f"(its {'/chat/completions' if chat else '/completions'} endpoint)") from None
    if not isinstance(text, str):
        raise TeacherError(f"teacher server {url} returned a non-text completion ({type(text).__name__}); "
                           "check the server's model and endpoint")
    return text


def openai_generate_fn(base_url: str, model: str = "default", *, max_new_tokens: int = 256,
                       temperature: float = 0.0, concurrency: int = 8, timeout_s: float = 120.0,
                       retries: int = 3, backoff_s: float = 1.0, chat: bool = True,
                       api_key: str | None = None) -> Callable[[Sequence[str]], list[str]]:
    """generate(prompts) over an OpenAI-compatible server at ``base_url`` (e.g. http://127.0.0.1:8000/v1)."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"--teacher-url {base_url!r} is not an http(s) URL; pass e.g. http://127.0.0.1:8000/v1")
    if concurrency < 1 or retries < 0 or timeout_s <= 0:
        raise ValueError("teacher: concurrency >= 1, retries >= 0 and timeout_s > 0 are required")
    url = base_url.rstrip("/") + ("/chat/completions" if chat else "/completions")

    def one(prompt: str) -> str:
        body = {"model": model, "max_tokens": max_new_tokens, "temperature": temperature}
        body.update({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
        last = None
        for attempt in range(retries + 1):
            try:
                return _text(_post(url, body, timeout_s, api_key), url, chat)
            except urllib.error.HTTPError as e:
                if e.code != 429 and e.code < 500:
                    detail = e.read()[:200].decode(errors="replace")
                    raise TeacherError(f"teacher server {url} answered HTTP {e.code} ({detail}); check "
                                       f"--teacher-model {model!r} and the request limits") from None
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < retries:
                time.sleep(backoff_s * 2 ** attempt)
        raise TeacherError(f"teacher server {url} failed {retries + 1} times (last: {last}); start the server, "
                           "fix --teacher-url, or raise --timeout-s / --retries")

    def generate(prompts: Sequence[str]) -> list[str]:
        with ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(prompts)))) as pool:
            return list(pool.map(one, prompts))      # in order; the first failure propagates

    return generate


def vllm_generate_fn(model: str, *, max_new_tokens: int = 256, temperature: float = 0.0,
                     **llm_kwargs) -> Callable[[Sequence[str]], list[str]]:
    """generate(prompts) over vLLM's offline engine (GPU); chat template applied when the model has one."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as e:
        raise TeacherError(f"--vllm needs the vllm package ({e}); pip install vllm on a GPU machine, or serve "
                           "the model (vllm serve MODEL) and pass --teacher-url http://127.0.0.1:8000/v1") from None
    llm = LLM(model=model, **llm_kwargs)
    params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature)

    def generate(prompts: Sequence[str]) -> list[str]:
        outs = llm.chat([[{"role": "user", "content": p}] for p in prompts], params)
        return [o.outputs[0].text for o in outs]

    return generate
