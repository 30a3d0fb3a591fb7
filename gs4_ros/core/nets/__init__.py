"""GS4's networks: the Gaussian prediction model (RGB-D backbone, Gaussian and semantic
heads) and the Gaussian refinement network, plus the mapping step that uses them."""
from .backbone import RGBDBackbone
from .predictor import GaussianPredictor, TokenGaussians
from .refiner import GaussianRefiner, apply_residuals
from .weights import DEFAULT_WEIGHTS, load_networks, save_networks

__all__ = ["RGBDBackbone", "GaussianPredictor", "TokenGaussians", "GaussianRefiner", "apply_residuals",
           "DEFAULT_WEIGHTS", "load_networks", "save_networks"]
