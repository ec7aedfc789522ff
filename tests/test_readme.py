"""The README stays true: its settings table is the settings table."""

from pathlib import Path

from memwarden.settings import settings_doc

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    """Regenerate with settings_doc() when a setting changes."""
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_doc().strip()


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.read_text().splitlines()[:12])
    assert "make demo" in head and "make test" in head
