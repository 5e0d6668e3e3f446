"""Properties of linkserver.wxf over generated values and generated garbage.

* Round trip: ``loads(dumps(x)) == x`` for expressions in decoded form, and
  encoding is then stable (``dumps(loads(b)) == b``).
* Parity: ``dumps(x)`` is byte for byte wolframclient's ``export(x)``, plain
  and compressed, and ``loads`` equals ``binary_deserialize`` on its output.
* The decoder's oracle (h11 ``fuzz/``): on any input it returns a value or
  raises ``WXFDecodeError`` -- random bytes, token soup, every truncation
  of a valid encoding and every single-byte corruption of one.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wolframclient.deserializers import binary_deserialize
from wolframclient.serializers import export
from wolframclient.utils.packedarray import PackedArray

from linkserver import wxf
from linkserver.errors import WXFDecodeError
from tests.strategies import (
    ARRAY_DTYPES,
    expressions,
    numpy_arrays,
    same_expression,
    wolfram_values,
)

FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decodes_or_rejects(data: bytes) -> object:
    """The oracle: a value, or WXFDecodeError and nothing else."""
    try:
        return wxf.loads(data)
    except WXFDecodeError as exc:
        assert exc.position is None or exc.position >= 0
        return exc


# -- round trip -------------------------------------------------------------


@FAST
@given(expressions())
def test_roundtrip(value: object) -> None:
    data = wxf.dumps(value)
    decoded = wxf.loads(data)
    assert decoded == value
    assert wxf.dumps(decoded) == data


@FEW
@given(expressions())
def test_roundtrip_compressed(value: object) -> None:
    data = wxf.dumps(value, compress=True)
    assert data.startswith(b"8C:")
    assert wxf.loads(data) == value
    assert zlib.decompress(data[3:]) == wxf.dumps(value)[2:]


@FAST
@given(numpy_arrays())
def test_numpy_roundtrip(array: np.ndarray) -> None:
    decoded = wxf.loads(wxf.dumps(array))
    assert same_expression(decoded, array.astype(array.dtype.newbyteorder("<")))


# -- parity with wolframclient ---------------------------------------------------


@FAST
@given(wolfram_values())
def test_bytes_identical_to_wolframclient(value: object) -> None:
    ours = wxf.dumps(value)
    assert ours == export(value, target_format="wxf")
    assert same_expression(wxf.loads(ours), binary_deserialize(ours))


@FEW
@given(wolfram_values())
def test_compressed_bytes_identical_to_wolframclient(value: object) -> None:
    ours = wxf.dumps(value, compress=True)
    assert ours == export(value, target_format="wxf", compress=True)
    assert same_expression(wxf.loads(ours), binary_deserialize(ours))


@FAST
@given(numpy_arrays())
def test_numpy_arrays_identical_to_wolframclient(array: np.ndarray) -> None:
    for value in (array, array.view(PackedArray)):
        if value is not array and array.dtype == np.uint64:
            continue  # no packed form; both refuse it
        data = wxf.dumps(value)
        assert data == export(value, target_format="wxf")
        assert same_expression(wxf.loads(data), binary_deserialize(data))


@FEW
@given(st.lists(st.integers(-(2**64), 2**64), min_size=250, max_size=400))
def test_long_int_vectors_identical_to_wolframclient(values: list[int]) -> None:
    assert wxf.dumps(values) == export(values, target_format="wxf")


@FEW
@given(st.lists(st.floats(), min_size=250, max_size=400))
def test_long_float_vectors_identical_to_wolframclient(values: list[float]) -> None:
    assert wxf.dumps(values) == export(values, target_format="wxf")


# -- the decoder's oracle -----------------------------------------------------


@FAST
@given(st.binary(max_size=200))
def test_random_bytes(junk: bytes) -> None:
    for data in (junk, b"8:" + junk, b"8C:" + junk, b"8C:" + zlib.compress(junk)):
        decodes_or_rejects(data)


# Fragments that make deep, nearly valid token streams.
_FRAGMENTS = [
    b"f", b"A", b"-", b":", b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80", b"\xff",
    b"C\x01", b"j\x01\x00", b"i\x01\x00\x00\x00", b"L" + bytes(8), b"r" + bytes(8),
    b"s\x01x", b"s\x04List", b"s\x04True", b"S\x02ab", b"B\x01z", b"I\x0212", b"R\x041.5`",
    b"R\x081*^99999", b"R\x0b1*^99999999", b"I\x03-12",
    b"\xc1\x00\x01\x02\x01\x02", b"\xc2\x10\x02\x01\x01\x07", b"\xc2\x34\x01\x01" + bytes(16),
    b"f\x01s\x01f", b"A\x01-", b"f\x00s\x04List",
]  # fmt: skip


@FAST
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map(b"".join))
def test_token_soup(body: bytes) -> None:
    decodes_or_rejects(b"8:" + body)
    decodes_or_rejects(b"8C:" + zlib.compress(body))


@FEW
@given(expressions(max_leaves=15))
def test_every_truncation_is_rejected(value: object) -> None:
    data = wxf.dumps(value)
    for cut in range(len(data)):
        with pytest.raises(WXFDecodeError):
            wxf.loads(data[:cut])
    compressed = wxf.dumps(value, compress=True)
    for cut in range(0, len(compressed), max(1, len(compressed) // 16)):
        with pytest.raises(WXFDecodeError):
            wxf.loads(compressed[:cut])


@FEW
@given(expressions(max_leaves=15), st.data())
def test_single_byte_corruptions(value: object, data: st.DataObject) -> None:
    original = bytearray(wxf.dumps(value))
    for index in range(len(original)):
        corrupted = bytearray(original)
        corrupted[index] = data.draw(st.integers(0, 255).filter(lambda b: b != original[index]))
        decodes_or_rejects(bytes(corrupted))


@FAST
@given(st.sampled_from(ARRAY_DTYPES), st.binary(max_size=64), st.integers(1, 4))
def test_arrays_over_arbitrary_bytes(dtype: type, payload: bytes, rank: int) -> None:
    kind = {
        np.int8: 0x00, np.int16: 0x01, np.int32: 0x02, np.int64: 0x03,
        np.uint8: 0x10, np.uint16: 0x11, np.uint32: 0x12, np.uint64: 0x13,
        np.float32: 0x22, np.float64: 0x23, np.complex64: 0x33, np.complex128: 0x34,
    }[dtype]  # fmt: skip
    size = np.dtype(dtype).itemsize
    count = len(payload) // size
    dims = [count] + [1] * (rank - 1)
    for token in (0xC1, 0xC2):
        data = bytes((0x38, 0x3A, token, kind, rank, *dims)) + payload
        result = decodes_or_rejects(data)
        if count and len(payload) % size == 0 and (token == 0xC2 or kind < 0x10 or kind > 0x13):
            assert isinstance(result, np.ndarray)
            assert result.tobytes() == payload
