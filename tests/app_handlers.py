"""The app's own event handlers, called in process (no server, no browser).

:func:`upload_handler` builds the app over a :class:`CurationActions` and returns what a
file upload runs (the ``/analyse`` endpoint), so a test can check what the app under
test stored in that actions' data directory.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from inkapp.curation.actions import CurationActions
from inkapp.ui.app import build_app


def upload_handler(actions: CurationActions) -> Callable[[list[str]], list[Any]]:
    """``upload(paths) -> outputs`` of the app's ``/analyse`` event over ``actions``.

    Every other input (domain, heat-map method, opacity, session ...) gets the value the
    page starts with, copied per call as gradio does for a new session. The outputs are
    in the endpoint's order: gallery, status markdown, then the rest.
    """
    demo = build_app(actions)
    event = next(fn for fn in demo.fns.values() if fn.api_name == "analyse")

    def upload(paths: list[str]) -> list[Any]:
        args = [copy.deepcopy(component.value) for component in event.inputs]
        args[0] = list(paths)  # the file widget
        return event.fn(*args)

    return upload
