"""docs/architecture.md is the picture of the app as it synthesizes now, not as someone once drew it."""

from __future__ import annotations

from pathlib import Path

from scripts.architecture_diagram import DEFAULT_OUT, render
from tests.infra.conftest import Synthesized


def test_committed_picture_matches_the_synthesized_app(synthesized: Synthesized) -> None:
    fresh = render(Path(synthesized.outdir), "prod")
    assert DEFAULT_OUT.read_text() == fresh, "docs/architecture.md is stale: run make synth and commit it"


def test_picture_shows_the_request_path(synthesized: Synthesized) -> None:
    # API -> endpoint is wired by name (the integration URI names the endpoint), which the picture must still show.
    text = render(Path(synthesized.outdir), "prod")
    assert "Inference_Api --> Inference_Model" in text
