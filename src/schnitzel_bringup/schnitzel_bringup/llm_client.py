"""The model server side of ``schnitzel draft``: its configuration and an OpenAI-compatible chat
client over plain HTTP (stdlib urllib), no ROS.

The API key is read from the environment only (SCHNITZEL_LLM_API_KEY, else OPENAI_API_KEY), sent in
the Authorization header and nowhere else: every text this module hands back (server errors, the
model's answer) has it masked (``redact``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

ENV_BASE_URL = "SCHNITZEL_LLM_BASE_URL"
ENV_MODEL = "SCHNITZEL_LLM_MODEL"
ENV_KEYS = ("SCHNITZEL_LLM_API_KEY", "OPENAI_API_KEY")


class DraftError(Exception):
    """Drafting cannot go on (server unreachable, timeout, not a chat completion, bad config).

    ``code``: the exit code the CLI uses (1 the model/server failed, 2 bad arguments)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- configuration
@dataclasses.dataclass
class LLMConfig:
    base_url: str
    model: str
    api_key: str = dataclasses.field(default="", repr=False)   # never printed
    timeout_s: float = 120.0
    use_schema: bool = True          # ask for JSON-schema-constrained output first

    @classmethod
    def resolve(cls, base_url: Optional[str], model: Optional[str], timeout_s: float = 120.0,
                use_schema: bool = True, env: Optional[Mapping[str, str]] = None) -> "LLMConfig":
        env = os.environ if env is None else env
        url = (base_url or env.get(ENV_BASE_URL, "")).strip()
        mdl = (model or env.get(ENV_MODEL, "")).strip()
        if not url:
            raise DraftError(f"no model server: pass --base-url (e.g. http://127.0.0.1:8080/v1) or set {ENV_BASE_URL}", 2)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DraftError(f"--base-url {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8080/v1)", 2)
        if not mdl:
            raise DraftError(f"no model: pass --model (the name the server knows, e.g. qwen2.5-coder) or set {ENV_MODEL}", 2)
        if timeout_s <= 0:
            raise DraftError("--timeout must be > 0", 2)
        key = next((env[k] for k in ENV_KEYS if env.get(k)), "")
        return cls(url, mdl, key, float(timeout_s), use_schema)

    @property
    def endpoint(self) -> str:
        url = self.base_url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"


def redact(text: str, secret: str) -> str:
    """``text`` with ``secret`` masked (a server may echo the key in an error)."""
    if secret and text:
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- chat client
@dataclasses.dataclass
class Completion:
    content: str
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    constrained: bool = False        # the request carried response_format json_schema


class ChatClient:
    """POST /chat/completions of an OpenAI-compatible server (llama.cpp, Ollama, vLLM, hosted)."""

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.schema_supported: Optional[bool] = None if config.use_schema else False
        host = urllib.parse.urlsplit(config.endpoint).hostname or ""
        # a local server must not go through a proxy set for the outside world
        handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
        self._opener = urllib.request.build_opener(*handlers)

    def _post(self, body: Dict[str, Any]) -> Tuple[int, str]:
        cfg = self.config
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        req = urllib.request.Request(cfg.endpoint, data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=cfg.timeout_s) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read().decode("utf-8", "replace")
            except Exception:  # noqa: BLE001 - the status alone is enough
                text = ""
            return exc.code, text
        except (socket.timeout, TimeoutError):
            raise DraftError(f"no answer from {cfg.endpoint} within {cfg.timeout_s:g} s "
                             "(a larger model may need --timeout)") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise DraftError(f"no answer from {cfg.endpoint} within {cfg.timeout_s:g} s "
                                 "(a larger model may need --timeout)") from None
            raise DraftError(f"cannot reach the model server at {cfg.endpoint}: {redact(str(reason), cfg.api_key)}") from None
        except (ConnectionError, OSError) as exc:
            raise DraftError(f"the connection to {cfg.endpoint} failed: {redact(str(exc), cfg.api_key)}") from None

    def complete(self, messages: Sequence[Mapping[str, str]], schema: Optional[Dict[str, Any]] = None) -> Completion:
        cfg = self.config
        body: Dict[str, Any] = {"model": cfg.model, "messages": list(messages), "temperature": 0.2}
        constrained = bool(schema) and self.schema_supported is not False
        if constrained:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "schnitzel_draft", "schema": schema}}
        status, text = self._post(body)
        if constrained and status in (400, 422) and self.schema_supported is None:
            # the server does not take response_format json_schema: ask again without it
            self.schema_supported = False
            body.pop("response_format")
            constrained = False
            status, text = self._post(body)
        elif constrained and status == 200:
            self.schema_supported = True
        text = redact(text, cfg.api_key)
        if status == 401 or status == 403:
            raise DraftError(f"{cfg.endpoint} refused the request (HTTP {status}): check the API key in "
                             f"{' or '.join(ENV_KEYS)}; {_snippet(text)}")
        if status != 200:
            raise DraftError(f"{cfg.endpoint} answered HTTP {status}: {_snippet(text)}")
        try:
            data = json.loads(text)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise DraftError(f"the answer of {cfg.endpoint} is not an OpenAI chat completion "
                             f"(no choices[0].message.content): {_snippet(text)}") from None
        if not isinstance(content, str):
            raise DraftError(f"the answer of {cfg.endpoint} has no text content: {_snippet(text)}")
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Completion(redact(content, cfg.api_key), _int(usage.get("prompt_tokens")),
                          _int(usage.get("completion_tokens")), constrained)


def _int(v: Any) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
