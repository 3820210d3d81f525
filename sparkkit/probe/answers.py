"""Readers of the plain answers the probes use, every field checked for its type (pure).

Ollama's ``/api/embed``, SearXNG's ``/search?format=json``, and ``/v1/models``. Each takes the
parsed JSON body and returns the values the kit reads, or raises ``Breach`` naming the field.

May import: ``probe.limits``, ``probe.fields``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkkit.probe.fields import get, item
from sparkkit.probe.limits import Breach, Failure


def embeddings(body: object) -> list[list[float]]:
    """``{"embeddings": [[number, ...], ...]}``: at least one vector, none empty."""
    body = item(body, dict, "the answer")
    vectors = get(body, "embeddings", list, "", required=True)
    if not vectors:
        raise Breach(Failure.EMPTY, "embeddings: empty")
    for i, vector in enumerate(vectors):
        item(vector, list, f"embeddings[{i}]")
        if not vector:
            raise Breach(Failure.EMPTY, f"embeddings[{i}]: empty")
        for j, value in enumerate(vector):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                item(value, float, f"embeddings[{i}][{j}]")
    return vectors


@dataclass(frozen=True, kw_only=True)
class SearchAnswer:
    results: int  # how many results came back
    complete: int  # how many of them have a url and a title


def search_results(body: object) -> SearchAnswer:
    """``{"results": [{"url": str, "title": str, ...}, ...]}``."""
    body = item(body, dict, "the answer")
    results = get(body, "results", list, "", required=True)
    complete = 0
    for i, result in enumerate(results):
        result = item(result, dict, f"results[{i}]")
        url = get(result, "url", str, f"results[{i}]")
        title = get(result, "title", str, f"results[{i}]")
        complete += bool(url and title)
    return SearchAnswer(results=len(results), complete=complete)


def first_model(body: object) -> str | None:
    """The first model's id of ``{"data": [{"id": str}, ...]}`` (None when the list is empty)."""
    body = item(body, dict, "the answer")
    data = get(body, "data", list, "", required=True)
    if not data:
        return None
    return get(item(data[0], dict, "data[0]"), "id", str, "data[0]", required=True)
