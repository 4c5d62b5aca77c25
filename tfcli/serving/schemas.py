"""The bodies of the server's requests and answers, and the errors a client gets for them.

`POST /translate` speaks LibreTranslate's API (JSON or a form): `q` a text or a list of
texts, `source`, `target`, `format`, `alternatives`, `api_key`; the answer mirrors `q`.
`POST /v1/translate` is the native one (JSON): `text`, `beam`, `n_best`, `scores`,
`alignment`. A text may hold several lines: each is translated as a sentence and the
translations are joined with newlines again.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tfcli.serving.worker import LineResult


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LibreTranslateRequest(BaseModel):
    """LibreTranslate's /translate body."""

    model_config = ConfigDict(extra="forbid")

    q: str | list[str]
    source: str = "auto"
    target: str
    format: Literal["text"] = "text"
    alternatives: int = Field(0, ge=0)
    api_key: str | None = None


class NativeRequest(BaseModel):
    """The /v1/translate body: search settings left out are the run's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str]
    beam: int | None = None
    n_best: int | None = None
    scores: bool = False
    alignment: bool = False
    api_key: str | None = None


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """A JSON object, or a form (`q` given several times: a list)."""
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise RequestError(400, "the form is not UTF-8") from None
        return {k: v if k == "q" and len(v) > 1 else v[0] for k, v in form.items()}
    if content_type and not content_type.startswith("application/json"):
        raise RequestError(415, f"send JSON or a form, not {content_type.split(';')[0]}")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise RequestError(
            400, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object")
    return data


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """`data` as `model`, or a 400 that names the first wrong field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        deepest = max(e.errors(), key=lambda err: len(err["loc"]))  # a list's item, not "a str"
        raise RequestError(400, _field_error(model, deepest)) from None


def _field_error(model: type[BaseModel], error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"] if not _is_type_name(part))
    if error["type"] == "missing":
        return f"{where}: required"
    if error["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(where, list(model.model_fields), n=1)
        return f"{where}: unknown field" + (f"; did you mean {hint[0]}?" if hint else "")
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}"


def _is_type_name(part: object) -> bool:
    """pydantic names the member of a union it tried (`str`, `list[str]`) in the location."""
    return isinstance(part, str) and (part in ("str", "int", "bool") or part.startswith("list["))


def texts_of(q: str | list[str]) -> list[str]:
    return [q] if isinstance(q, str) else q


def check_texts(texts: list[str], field: str, max_chars: int, max_lines: int) -> None:
    """413 for more texts or characters than the server takes; 400 for text that is not
    Unicode (JSON lets a lone surrogate through, "\\ud800")."""
    if len(texts) > max_lines:
        raise RequestError(413, f"{field}: {len(texts)} texts; at most {max_lines} a request")
    chars = sum(map(len, texts))
    if chars > max_chars:
        raise RequestError(413, f"{field}: {chars} characters; at most {max_chars} a request")
    for n, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            where = field if len(texts) == 1 else f"{field}.{n}"
            raise RequestError(400, f"{where}: not valid Unicode (a lone surrogate)") from None


def split_lines(texts: list[str]) -> tuple[list[str], list[int]]:
    """Every line of every text, and how many lines each text has."""
    per_text = [t.split("\n") for t in texts]
    return [line for lines in per_text for line in lines], [len(lines) for lines in per_text]


def join_lines(results: list[LineResult], counts: list[int]) -> list[list[LineResult]]:
    """The line results of each text."""
    out, start = [], 0
    for n in counts:
        out.append(results[start : start + n])
        start += n
    return out


def _nth(line: LineResult, k: int) -> tuple[str, float, str]:
    """Hypothesis k of a line (its best when it has fewer): text, score, alignment."""
    if not line.hypotheses:
        return "", 0.0, ""
    k = min(k, len(line.hypotheses) - 1)
    hyp = line.hypotheses[k]
    return hyp.text, hyp.score, line.alignments[k] if line.alignments else ""


def hypothesis(lines: list[LineResult], k: int, scores: bool, alignment: bool) -> dict[str, Any]:
    """Hypothesis k of a text: its lines' k-th translations joined; the score is their sum."""
    parts = [_nth(line, k) for line in lines]
    out: dict[str, Any] = {"text": "\n".join(p[0] for p in parts)}
    if scores:
        out["score"] = round(sum(p[1] for p in parts), 4)
    if alignment:
        out["alignment"] = "\n".join(p[2] for p in parts)
    return out


def libretranslate_answer(request: LibreTranslateRequest, texts: list[list[LineResult]]) -> dict:
    """`translatedText` (and `alternatives`) as a string for a string `q`, lists for a list."""
    best = [hypothesis(t, 0, False, False)["text"] for t in texts]
    others = [
        [hypothesis(t, k, False, False)["text"] for k in range(1, request.alternatives + 1)]
        for t in texts
    ]
    single = isinstance(request.q, str)
    answer: dict[str, Any] = {"translatedText": best[0] if single else best}
    if request.alternatives:
        answer["alternatives"] = others[0] if single else others
    return answer


def native_answer(request: NativeRequest, texts: list[list[LineResult]], n: int) -> dict:
    """`translations`: per text its best hypothesis, and all `n` of them when n > 1."""
    out = []
    for t in texts:
        entry = hypothesis(t, 0, request.scores, request.alignment)
        if n > 1:
            entry["hypotheses"] = [
                hypothesis(t, k, request.scores, request.alignment) for k in range(n)
            ]
        out.append(entry)
    return {"translations": out}
