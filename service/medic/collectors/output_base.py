"""What every collector's output model shares (issue 16.3): the analyzers validate stored evidence
with these models (offline too) instead of reading untyped dicts."""

from __future__ import annotations

from typing import Any, ClassVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class Out(BaseModel):
    """A collector's output. Validation ignores keys it does not declare, and every field has a
    default, so data written by hand gives only what matters; the analyzers and ``medic test``
    then refuse a key the model lacks (:func:`unknown_keys`: a misspelt key would read as its
    default), except in models that keep extra keys (open-ended sections such as Redis INFO's).
    What a collector stores is built through the model, so holds none. Fields named in
    ``omit_when_none`` are left out of the stored data while they are None (the pod spec has an
    env var's ``value`` or its ``value_from``, never both), on every pydantic release Medic
    supports."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    omit_when_none: ClassVar[frozenset[str]] = frozenset()
    # True: dump only the fields the data had (a default filled in on reading is neither stored
    # nor repeated in a finding's details), for replies whose fields come and go (Redis, MongoDB)
    dump_as_given: ClassVar[bool] = False

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            absent = type(self).model_fields.keys() - self.model_fields_set if self.dump_as_given else set()
            for name in absent:
                data.pop(name, None)
            for name in self.omit_when_none:
                if name in data and data[name] is None:
                    del data[name]
        return data


class AsGiven(Out):
    """An output whose dump holds only the fields it was given (see :attr:`Out.dump_as_given`)."""

    dump_as_given: ClassVar[bool] = True


def unknown_keys(
    model: type[BaseModel], data: Any, at: tuple[str | int, ...] = ()
) -> list[tuple[str | int, ...]]:
    """Paths of the keys in ``data`` that ``model`` (and the models of its fields, through lists,
    mappings and optionals) does not declare, where it does not keep extra keys itself (an
    open-ended section such as Redis INFO's does)."""
    if not isinstance(data, dict) or model.model_config.get("extra") == "allow":
        return []
    fields = model.model_fields
    names = {f.alias or n: n for n, f in fields.items()} | {n: n for n in fields}
    out: list[tuple[str | int, ...]] = []
    for key, value in data.items():
        if key in names:
            out += _unknown_in(fields[names[key]].annotation, value, (*at, key))
        else:
            out.append((*at, key))
    return out


def _unknown_in(annotation: Any, value: Any, at: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """:func:`unknown_keys` of a value by its annotation (``M``, ``list[M]``, ``dict[str, M]``,
    and unions of them such as ``list[M] | None``: the member the value's shape is)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return unknown_keys(annotation, value, at)
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        items = value if isinstance(value, list) and args else []
        return [p for i, item in enumerate(items) for p in _unknown_in(args[0], item, (*at, i))]
    if origin is dict:
        pairs = value.items() if isinstance(value, dict) and len(args) == 2 else []
        return [p for k, v in pairs for p in _unknown_in(args[1], v, (*at, k))]
    shaped = [a for a in args if _shape_of(a) is type(value)]  # a union: the member of the value's shape
    return _unknown_in(shaped[0], value, at) if len(shaped) == 1 else []


def _shape_of(annotation: Any) -> type | None:
    """The JSON shape a member of a union takes: an object (a model, a mapping), a list, or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dict
    origin = get_origin(annotation)
    return dict if origin is dict else list if origin in (list, tuple, set, frozenset) else None
