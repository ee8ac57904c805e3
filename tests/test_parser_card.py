"""The model card generator keeps the card's hand-written notes, once, however often it runs."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "evaluate_parser.py"


def _script():
    spec = importlib.util.spec_from_file_location("evaluate_parser", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notes_start_at_their_heading_not_where_the_regenerate_line_names_it():
    script = _script()
    card = ("# Card\n\nRegenerate: `...` (everything from `## Notes` on is hand-written and kept).\n\n"
            "## Notes\n\nWhy dresses score low.\n")
    notes = script.hand_written_notes(card)
    assert notes == "## Notes\n\nWhy dresses score low.\n"
    regenerated = card.split("## Notes\n\n")[0] + notes
    assert script.hand_written_notes(regenerated) == notes
    assert script.hand_written_notes("# Card without notes\n") == ""
