"""Models, built by name: ``build("tfn", spec, d_model=64)``.

Each method lives in one file that reads top to bottom beside its paper.
"""
from . import baselines  # noqa: F401  (registers the baselines)
from . import dashfusion  # noqa: F401
from . import cyin  # noqa: F401
from . import hme  # noqa: F401
from . import lnln  # noqa: F401
from . import mmslf  # noqa: F401
from . import midg  # noqa: F401
from .base import MSAModel, ModelOutput, available, build, make_config, register

BASELINES = ("text_only", "early_fusion", "late_fusion", "tfn", "mult")

__all__ = ["MSAModel", "ModelOutput", "available", "build", "make_config", "register", "BASELINES"]
