from fashion_search.embed.onnx_cnn import OnnxCnnEmbedder
from fashion_search.garments.parser import GarmentParser

SPINNING = "session.intra_op.allow_spinning"


def test_served_models_do_not_busy_wait_between_runs():
    # A search runs the parser, the embedder and the lookups back to back on few cores; a
    # model's spinning threads would take the cores from the next step.
    parser = GarmentParser()
    embedder = OnnxCnnEmbedder(threads=2)
    for session in (parser.session, embedder._session):
        assert session.get_session_options().get_session_config_entry(SPINNING) == "0"
