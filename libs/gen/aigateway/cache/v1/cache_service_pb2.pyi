from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LookupResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOOKUP_RESULT_UNSPECIFIED: _ClassVar[LookupResult]
    LOOKUP_RESULT_MISS: _ClassVar[LookupResult]
    LOOKUP_RESULT_EXACT_HIT: _ClassVar[LookupResult]
    LOOKUP_RESULT_SEMANTIC_HIT: _ClassVar[LookupResult]
LOOKUP_RESULT_UNSPECIFIED: LookupResult
LOOKUP_RESULT_MISS: LookupResult
LOOKUP_RESULT_EXACT_HIT: LookupResult
LOOKUP_RESULT_SEMANTIC_HIT: LookupResult

class LookupRequest(_message.Message):
    __slots__ = ("tenant", "request_json", "allow_semantic")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    request_json: bytes
    allow_semantic: bool
    def __init__(self, tenant: _Optional[str] = ..., request_json: _Optional[bytes] = ..., allow_semantic: bool = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("result", "response_json", "similarity")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    result: LookupResult
    response_json: bytes
    similarity: float
    def __init__(self, result: _Optional[_Union[LookupResult, str]] = ..., response_json: _Optional[bytes] = ..., similarity: _Optional[float] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("tenant", "request_json", "response_json", "allow_semantic")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_JSON_FIELD_NUMBER: _ClassVar[int]
    ALLOW_SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    request_json: bytes
    response_json: bytes
    allow_semantic: bool
    def __init__(self, tenant: _Optional[str] = ..., request_json: _Optional[bytes] = ..., response_json: _Optional[bytes] = ..., allow_semantic: bool = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("semantic_stored",)
    SEMANTIC_STORED_FIELD_NUMBER: _ClassVar[int]
    semantic_stored: bool
    def __init__(self, semantic_stored: bool = ...) -> None: ...

class StoreBatchRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[StoreRequest]
    def __init__(self, entries: _Optional[_Iterable[_Union[StoreRequest, _Mapping]]] = ...) -> None: ...

class StoreBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StoreResult, _Mapping]]] = ...) -> None: ...

class StoreResult(_message.Message):
    __slots__ = ("semantic_stored", "error")
    SEMANTIC_STORED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    semantic_stored: bool
    error: _status_pb2.Status
    def __init__(self, semantic_stored: bool = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("exact_hits", "semantic_hits", "misses", "semantic_rejections")
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    exact_hits: int
    semantic_hits: int
    misses: int
    semantic_rejections: int
    def __init__(self, exact_hits: _Optional[int] = ..., semantic_hits: _Optional[int] = ..., misses: _Optional[int] = ..., semantic_rejections: _Optional[int] = ...) -> None: ...

class GetKeyDigestRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetKeyDigestResponse(_message.Message):
    __slots__ = ("bits", "bit_count", "hash_count", "key_version")
    BITS_FIELD_NUMBER: _ClassVar[int]
    BIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    HASH_COUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    bits: bytes
    bit_count: int
    hash_count: int
    key_version: str
    def __init__(self, bits: _Optional[bytes] = ..., bit_count: _Optional[int] = ..., hash_count: _Optional[int] = ..., key_version: _Optional[str] = ...) -> None: ...
