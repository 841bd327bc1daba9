"""What the Kubernetes collectors' output models share (issue 16.3)."""

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

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.omit_when_none:
                if name in data and data[name] is None:
                    del data[name]
        return data
