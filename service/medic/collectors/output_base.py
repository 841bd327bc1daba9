"""What every collector's output model shares (issue 16.3): the analyzers validate stored evidence
with these models (offline too) instead of reading untyped dicts."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class Out(BaseModel):
    """A collector's output: extra keys are ignored, not refused (a bundle written by hand, such
    as a rule test's pod with a ``ready`` key, still reads; what a collector stores is built
    through the model, so holds none). Fields named in ``omit_when_none`` are left out of the
    stored data while they are None (the pod spec has an env var's ``value`` or its
    ``value_from``, never both), on every pydantic release Medic supports."""

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
