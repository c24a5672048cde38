"""Fixtures shared by the GUI tests. pytest finds them here, so a test module requests them by name and
does not import them (an imported fixture that a test then takes as a parameter is a redefinition)."""
from ._app_fixtures import (  # noqa: F401
    album, gui_app, gui_library, imported_library, make_window, qsettings_tmp, thumb_cache,
)
from .test_captioning_flows import make_controller, window  # noqa: F401
from .test_suggestions import squares  # noqa: F401
