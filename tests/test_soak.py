"""Short CI form of the soak (``python -m inkapp.dev.soak`` runs the full 200-analysis one):
concurrent clients against the launched app, no errors, RSS reported (not asserted)."""
from __future__ import annotations

from pathlib import Path

from inkapp.dev.soak import run_soak

from conftest import LaunchedApp

ANALYSES, CLIENTS = 20, 4


def test_short_soak_has_no_errors(launched_app: LaunchedApp, tmp_path: Path) -> None:
    result = run_soak(launched_app.url, launched_app.pid, ANALYSES, CLIENTS, tmp_path, side=64, first_index=10_000,
                      warmup=CLIENTS)
    print(f"soak: {result.to_dict()}")
    assert result.errors == []
    assert result.rss_start_mib > 0 and result.rss_end_mib > 0
