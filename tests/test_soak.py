"""Short CI form of the soak (``python -m inkapp.dev.soak`` runs the full 200-analysis one):
concurrent clients against the launched app: no errors, every analysis stored and logged, and the
RSS figures are the server's (compared with its /proc entry; their growth is reported, not asserted)."""
from __future__ import annotations

from pathlib import Path

import pytest

from inkapp.dev.soak import rss_mib, run_soak

from conftest import LaunchedApp
from upload_cases import stored_state

ANALYSES, CLIENTS = 20, 4


def test_short_soak_has_no_errors(launched_app: LaunchedApp, tmp_path: Path) -> None:
    before = stored_state(launched_app.data_dir)
    result = run_soak(launched_app.url, launched_app.pid, ANALYSES, CLIENTS, tmp_path, side=64, first_index=10_000,
                      warmup=CLIENTS)
    print(f"soak: {result.to_dict()}")
    assert result.errors == []
    assert (result.analyses, result.clients) == (ANALYSES, CLIENTS)
    images, _, log = stored_state(launched_app.data_dir)  # every analysis reached the app: one stored image and
    assert len(images) - len(before[0]) == ANALYSES + CLIENTS  # two logged task predictions each (warm-up included)
    assert len(log.splitlines()) - len(before[2].splitlines()) == 2 * (ANALYSES + CLIENTS)
    now = rss_mib(launched_app.pid)  # the figures are the server's resident memory, not this process's
    for figure in (result.rss_ready_mib, result.rss_start_mib, result.rss_end_mib):
        assert 0.5 * now <= figure <= 1.5 * now, (figure, now)
    assert result.rss_end_mib == pytest.approx(now, rel=0.2)
    assert result.rss_growth == pytest.approx(result.rss_end_mib / result.rss_start_mib - 1)
