"""The reference as a backend: the op functions under their op names."""

from .appearance import appearance
from .bias_field import bias_field
from .gmm_shapes import gmm_shapes
from .philox_fill import philox_fill
from .spline_maximum import spline_maximum

__all__ = ["appearance", "bias_field", "gmm_shapes", "philox_fill", "spline_maximum"]
