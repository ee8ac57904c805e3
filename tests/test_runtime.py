"""The ONNX models the project serves: one onnxruntime factory, and files that say what they are."""

import numpy as np
import pytest

from fashion_search.embed.onnx_cnn import DEFAULT_MODEL_PATH, OnnxCnnEmbedder
from fashion_search.errors import ModelError, ModelNotFoundError
from fashion_search.garments import parser as parser_module
from fashion_search.garments.parser import DEFAULT_MODEL, GarmentParser
from fashion_search.garments.taxonomy import PARSER_CLASSES
from fashion_search.runtime import model_metadata, onnx_session


def test_served_models_share_one_set_of_session_settings():
    # A search runs the parser, the embedder and the lookups back to back on few cores; a
    # model's spinning threads would take the cores from the next step.
    parser, embedder = GarmentParser(threads=2), OnnxCnnEmbedder(threads=2)
    options = [session.get_session_options() for session in (parser._session, embedder._session)]
    for option in options:
        assert option.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # onnxruntime's key
        assert option.intra_op_num_threads == 2 and option.inter_op_num_threads == 1
    assert len({(o.graph_optimization_level, o.execution_mode, o.log_severity_level) for o in options}) == 1


def test_the_parser_reads_its_classes_size_and_scaling_from_its_file():
    parser = GarmentParser(threads=1)
    meta = model_metadata(parser._session)
    assert meta["classes"].split(",") == list(PARSER_CLASSES) and parser.classes == PARSER_CLASSES
    assert parser.input_size == (448, 288)
    # The backbone's own scaling, (x - 127) / 128 on 0..255 values; the parsers before 2026-12-02
    # were trained with (x - 127/255) / (128/255), recorded in their files and served so.
    assert np.allclose(parser._mean, 127) and np.allclose(parser._std, 128)
    identity = parser.identity()
    assert identity["classes"] == list(PARSER_CLASSES) and len(identity["sha256"]) == 64


def test_a_parser_whose_classes_the_code_does_not_know_is_refused(monkeypatch):
    monkeypatch.setattr(parser_module, "PARSER_CLASSES", PARSER_CLASSES[:-1] + ("necklace",))
    with pytest.raises(ModelError, match="classes .*eyewear.*necklace|do not belong together"):
        GarmentParser(threads=1)


def test_a_model_file_without_its_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx", reason="editing an ONNX file needs the train extra")
    bare = onnx.load(str(DEFAULT_MODEL))
    del bare.metadata_props[:]
    onnx.save_model(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="does not record its classes"):
        GarmentParser(model_path=tmp_path / "bare.onnx", threads=1)


def test_a_missing_or_broken_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError):
        onnx_session(tmp_path / "absent.onnx")
    (tmp_path / "broken.onnx").write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not an ONNX model"):
        onnx_session(tmp_path / "broken.onnx")
