"""Fixtures every GUI test can use (pytest registers fixtures found in a conftest's namespace): the app,
a window factory and libraries from tests/helpers/gui_app.py, the captioning stand-ins, the square-faces
library. Test files import plain helper functions only, never fixtures or other test files."""
from __future__ import annotations

import pytest

from tests.helpers.gui_app import (  # noqa: F401 - fixtures
    album, gui_app, gui_library, imported_library, make_window, qsettings_tmp, thumb_cache,
)
from tests.helpers.gui_captioning import demo_album, make_controller, window  # noqa: F401 - fixtures
from tests.helpers.square_faces import squares  # noqa: F401 - fixture


@pytest.fixture
def faces(squares, make_window, qtbot):  # noqa: F811 - squares is the fixture imported above
    """The Unknown Faces page on the square-faces library: (window, library, photo ids, matcher)."""
    lib, ids, matcher = squares
    win = make_window(lib)
    win.show_page("faces")
    return win, lib, ids, matcher
