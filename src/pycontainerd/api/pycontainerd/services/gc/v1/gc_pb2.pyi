from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Removal(_message.Message):
    __slots__ = ("kind", "namespace", "id", "size")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    id: str
    size: int
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., id: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class PlanResponse(_message.Message):
    __slots__ = ("removals", "bytes_freed", "duration_seconds")
    REMOVALS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    removals: _containers.RepeatedCompositeFieldContainer[Removal]
    bytes_freed: int
    duration_seconds: float
    def __init__(self, removals: _Optional[_Iterable[_Union[Removal, _Mapping]]] = ..., bytes_freed: _Optional[int] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class WhyRequest(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class WhyResponse(_message.Message):
    __slots__ = ("reachable", "chain")
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    reachable: bool
    chain: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reachable: _Optional[bool] = ..., chain: _Optional[_Iterable[str]] = ...) -> None: ...
