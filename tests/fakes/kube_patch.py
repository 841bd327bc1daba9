"""JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and a strategic-merge subset.

JSON Patch follows the library kube-apiserver uses (``gopkg.in/evanphx/json-patch.v4``),
including its quirks that a client can observe:

- ``replace`` of a missing *object member* succeeds (acts as ``add``); a missing array index or
  a missing parent fails;
- ``test`` of a missing object member passes when the expected value is ``null``;
- ``remove`` of a missing member fails; an unknown ``op`` fails when applied.

Any failure while *applying* raises :class:`PatchApplyError` (the apiserver answers 422
``Invalid``); a body that is not a JSON array of objects raises :class:`PatchDecodeError`
(400 ``BadRequest``).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchDecodeError(ValueError):
    """The patch document itself is malformed (HTTP 400)."""


class PatchApplyError(ValueError):
    """The patch could not be applied to the object (HTTP 422)."""


def json_equal(a: Any, b: Any) -> bool:
    """Structural JSON equality (``true`` is not ``1``; ``1`` equals ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _tokens(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise PatchApplyError("operation missing path")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchApplyError(f"invalid JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(token: str, length: int, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return length
    try:
        idx = int(token)
    except ValueError as exc:
        raise PatchApplyError(f"invalid array index {token!r}") from exc
    if idx < 0:
        idx += length
    upper = length if allow_end else length - 1
    if idx < 0 or idx > upper:
        raise PatchApplyError(f"Unable to access invalid index: {token}")
    return idx


def _parent(doc: Any, tokens: list[str], path: Any) -> tuple[Any, str]:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current or current[token] is None:
                raise PatchApplyError(f"doc is missing path: {path}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(token, len(current), allow_end=False)]
        else:
            raise PatchApplyError(f"doc is missing path: {path}")
    if not isinstance(current, dict | list):
        raise PatchApplyError(f"doc is missing path: {path}")
    return current, tokens[-1]


def _get(doc: Any, path: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return doc
    container, key = _parent(doc, tokens, path)
    if isinstance(container, dict):
        if key not in container:
            raise PatchApplyError(f"doc is missing key: {path}")
        return container[key]
    return container[_index(key, len(container), allow_end=False)]


def _add(doc: Any, path: Any, value: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    container, key = _parent(doc, tokens, path)
    if isinstance(container, dict):
        container[key] = value
    else:
        container.insert(_index(key, len(container), allow_end=True), value)
    return doc


def _remove(doc: Any, path: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        raise PatchApplyError("unable to remove the whole document")
    container, key = _parent(doc, tokens, path)
    if isinstance(container, dict):
        if key not in container:
            raise PatchApplyError(f"Unable to remove nonexistent key: {key}")
        del container[key]
    else:
        del container[_index(key, len(container), allow_end=False)]
    return doc


def _replace(doc: Any, path: Any, value: Any) -> Any:
    tokens = _tokens(path)
    if not tokens:
        if not isinstance(value, dict | list):
            raise PatchApplyError("replace operation value must be object or array")
        return value
    container, key = _parent(doc, tokens, path)
    if isinstance(container, dict):
        container[key] = value  # v4 quirk: a missing member is simply set
    else:
        container[_index(key, len(container), allow_end=False)] = value
    return doc


def _test(doc: Any, path: Any, value: Any) -> None:
    tokens = _tokens(path)
    if tokens:
        container, key = _parent(doc, tokens, path)
        if isinstance(container, dict):
            if key not in container:
                if value is None:
                    return
                raise PatchApplyError(f"testing value {path} failed: test failed")
            actual = container[key]
        else:
            actual = container[_index(key, len(container), allow_end=False)]
    else:
        actual = doc
    if not json_equal(actual, value):
        raise PatchApplyError(f"testing value {path} failed: test failed")


def decode_json_patch(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(op, dict) for op in body):
        kind = type(body).__name__
        raise PatchDecodeError(
            f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch"
        )
    return body


def apply_json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch to a deep copy of ``document`` and return the result."""
    ops = decode_json_patch(operations)
    doc = copy.deepcopy(document)
    for op in ops:
        kind = op.get("op")
        path = op.get("path")
        value = copy.deepcopy(op.get("value"))
        if kind == "add":
            doc = _add(doc, path, value)
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            doc = _replace(doc, path, value)
        elif kind == "move":
            source = op.get("from")
            if isinstance(path, str) and isinstance(source, str) and (
                path.startswith(source + "/")
            ):
                raise PatchApplyError("move operation cannot move a value into its own child")
            moved = _get(doc, source)
            doc = _remove(doc, source)
            doc = _add(doc, path, moved)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from"))))
        elif kind == "test":
            _test(doc, path, value)
        else:
            raise PatchApplyError(f"Unexpected kind: {kind}")
    return doc


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# Lists whose items merge by a key under strategic merge patch (a practical subset of the
# patchMergeKey tags in k8s.io/api).
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
    "topologySpreadConstraints": ("topologyKey",),
}

_DIRECTIVE = "$patch"


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if k != _DIRECTIVE and not k.startswith("$")
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


def _merge_key_for(field: str, items: list[Any], current: list[Any]) -> str | None:
    candidates = _MERGE_KEYS.get(field)
    if not candidates:
        return None
    if not all(isinstance(i, dict) for i in items) or not all(
        isinstance(i, dict) for i in current
    ):
        return None
    for key in candidates:
        if any(key in i for i in items if i.get(_DIRECTIVE) != "replace"):
            return key
    return candidates[0]


def _merge_list(current: list[Any], items: list[Any], key: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get(_DIRECTIVE) == "replace" for i in items):
        return [_strip_directives(i) for i in items if i.get(_DIRECTIVE) != "replace"]
    result = copy.deepcopy(current)
    for item in items:
        position = next(
            (n for n, existing in enumerate(result) if existing.get(key) == item.get(key)),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if position is not None:
                del result[position]
            continue
        if position is None:
            result.append(_strip_directives(item))
        else:
            result[position] = apply_strategic_merge_patch(result[position], item)
    return result


def apply_strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch, except that known lists (containers, env, ports, ...) merge by key.

    Supports the ``$patch: replace|delete`` directives and ``$deleteFromPrimitiveList/``;
    ``$setElementOrder/`` and ``$retainKeys`` are accepted and ignored.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get(_DIRECTIVE) == "replace":
        return _strip_directives(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == _DIRECTIVE or key == "$retainKeys" or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get(_DIRECTIVE) == "delete":
                result.pop(key, None)
            else:
                result[key] = apply_strategic_merge_patch(result.get(key), value)
        elif isinstance(value, list):
            current = result.get(key) if isinstance(result.get(key), list) else []
            merge_key = _merge_key_for(key, value, current or [])
            if merge_key is None:
                result[key] = _strip_directives(value)
            else:
                result[key] = _merge_list(current or [], value, merge_key)
        else:
            result[key] = copy.deepcopy(value)
    return result
