"""Small fixes found while testing issue 14: each test fails on the code before its fix.

- IASS ``max_bin`` error named 81 bins; the U-Net's frequency sizes need 3**6 = 729.
- ``vae.json`` was written in place: a crash mid-write left a torn file that evaluate/traverse
  then failed to parse. It now goes through ``tfmusic.storage.write_atomic``.
- grpc logged a traceback at ERROR for every malformed request; the embedded server now logs one
  WARNING line for a protobuf parse error (still INTERNAL, as TF Serving answers) and leaves any
  other exception's traceback alone.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys

import pytest

from tfmusic.models.iass import iass_frequency_sizes


def test_iass_max_bin_message_names_the_real_minimum():
    assert iass_frequency_sizes(729)[0] == [729, 243, 81, 27]
    with pytest.raises(ValueError, match=r"max_bin=728 .*needs >= 729"):
        iass_frequency_sizes(728)


def test_vae_json_is_never_left_torn(tmp_path, monkeypatch):
    from tfmusic import storage
    from tfmusic.training.vae import VAEConfig, save_run_meta

    @dataclasses.dataclass
    class Data:
        def describe(self) -> dict:
            return {"kind": "stub"}

    cfg = VAEConfig(model="mnist", objective="ar")
    save_run_meta(tmp_path, cfg, Data(), 10, None)
    before = (tmp_path / "vae.json").read_text()
    assert json.loads(before)["steps_per_epoch"] == 10

    def torn_write(path, payload):  # the process dies half-way through the bytes
        with open(path, "wb") as f:
            f.write(payload[: len(payload) // 2])
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(storage, "write_bytes", torn_write)
    with pytest.raises(KeyboardInterrupt):
        save_run_meta(tmp_path, cfg, Data(), 20, None)
    assert (tmp_path / "vae.json").read_text() == before  # the old file, whole


def _record(exc: BaseException, msg: str) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:  # noqa: BLE001  (any exception: the record is what is tested)
        return logging.LogRecord("grpc._common", logging.ERROR, __file__, 1, msg, None, sys.exc_info())


def test_grpc_decode_error_filter_keeps_real_errors():
    from google.protobuf.message import DecodeError

    from tfmusic.serving.grpc_api import _OneLineDecodeErrors

    f = _OneLineDecodeErrors()
    bad = _record(DecodeError("Error parsing message"), "Exception deserializing message!")
    assert f.filter(bad) and bad.levelno == logging.WARNING and bad.exc_info is None
    assert "Error parsing message" in bad.getMessage() and "INTERNAL" in bad.getMessage()
    real = _record(RuntimeError("boom"), "Exception deserializing message!")
    assert f.filter(real) and real.levelno == logging.ERROR and real.exc_info is not None


def test_malformed_grpc_request_is_one_warning_line(tmp_path, caplog):
    import grpc

    from tfmusic.serving.server import EmbeddedServer

    (tmp_path / "empty").mkdir()
    with EmbeddedServer(tmp_path / "empty", port=0, poll_seconds=0) as server, \
            grpc.insecure_channel(server.address) as channel:
        predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with caplog.at_level(logging.WARNING, logger="grpc"), pytest.raises(grpc.RpcError) as err:
            predict(b"\x0a\xff\xff\xff\xff\x0f\x12\x01", timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    grpc_records = [r for r in caplog.records if r.name.startswith("grpc")]
    assert grpc_records, "the malformed request was not logged at all"
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in grpc_records), \
        [(r.levelname, r.getMessage()) for r in grpc_records]
