"""The ``fbp`` command line. Importing a command module registers it on :data:`app`."""

from ._app import app, main  # noqa: F401

# One import per command module (each registers itself on the app).
from . import train  # noqa: F401
from . import pretrain  # noqa: F401
from . import preprocess  # noqa: F401
from . import compare  # noqa: F401
from . import demo_data  # noqa: F401
from . import infer  # noqa: F401
from . import tune  # noqa: F401
from . import evaluate  # noqa: F401
from . import quickstart  # noqa: F401
from . import export  # noqa: F401
