"""Read the ``grm`` record of an ONNX file without onnx, onnxruntime or loading the graph.

The TensorRT builder and the TensorRT execution provider must know a model's precision (an INT8 Q/DQ model
is built differently) before TensorRT or ONNX Runtime parse it, and the runtime has no ``onnx`` dependency.
An ONNX file is one protobuf ``ModelProto``; its ``metadata_props`` (field 14) are ``{key: 1, value: 2}``
string pairs. This module walks the top-level fields and seeks over the others (the graph with its weights),
so even a 1 GB model costs a few reads.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from grm.runtime.backends.io_check import parse_metadata
from grm.runtime.errors import ArtifactMismatchError
from grm.runtime.params import METADATA_KEY, ModelMetadata

METADATA_PROPS_FIELD = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Malformed(ValueError):
    """The bytes are not a protobuf message."""


def _varint(read: BinaryIO) -> int | None:
    """The next base-128 varint, or None at a clean end of file."""
    value, shift = 0, 0
    while True:
        byte = read.read(1)
        if not byte:
            if shift:
                raise _Malformed("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _Malformed("varint longer than 10 bytes")


def _fields(stream: BinaryIO, end: int) -> list[tuple[int, bytes]]:
    """(field number, payload) of every ``metadata_props`` entry; every other field is skipped unread."""
    found = []
    while stream.tell() < end:
        tag = _varint(stream)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == _VARINT:
            if _varint(stream) is None:
                raise _Malformed("truncated varint field")
        elif wire in (_FIXED64, _FIXED32):
            stream.seek(8 if wire == _FIXED64 else 4, 1)
        elif wire == _LENGTH:
            size = _varint(stream)
            if size is None or stream.tell() + size > end:
                raise _Malformed("length beyond the end of the data")
            if number == METADATA_PROPS_FIELD:
                found.append((number, stream.read(size)))
            else:
                stream.seek(size, 1)
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    return found


def _entry(payload: bytes) -> tuple[str, str]:
    """Decode one ``StringStringEntryProto`` (key = field 1, value = field 2)."""
    stream, key, value = io.BytesIO(payload), "", ""
    while stream.tell() < len(payload):
        tag = _varint(stream)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if wire != _LENGTH:
            raise _Malformed("metadata entry field is not a string")
        size = _varint(stream)
        if size is None or stream.tell() + size > len(payload):
            raise _Malformed("metadata entry beyond its end")
        text = stream.read(size).decode("utf-8")
        if number == 1:
            key = text
        elif number == 2:
            value = text
    return key, value


def onnx_metadata_props(path: str | Path) -> dict[str, str]:
    """Every ``metadata_props`` entry of an ONNX file.

    Raises:
        ArtifactMismatchError: the file cannot be read or is not a protobuf message.
    """
    try:
        with open(path, "rb") as stream:
            end = stream.seek(0, 2)
            stream.seek(0)
            return dict(_entry(payload) for _, payload in _fields(stream, end))
    except OSError as e:
        raise ArtifactMismatchError(f"cannot read {path}: {e.strerror or e}") from e
    except (_Malformed, UnicodeDecodeError) as e:
        raise ArtifactMismatchError(f"{path} is not an ONNX file ({e}); re-export it with grm-export") from e


def read_onnx_metadata(path: str | Path) -> ModelMetadata:
    """The model's :class:`ModelMetadata`; a file without a readable ``grm`` record -> ArtifactMismatchError."""
    return parse_metadata(onnx_metadata_props(path).get(METADATA_KEY), str(path))
