"""Models: the RGB stream (ResNet3D-18), the skeleton stream (AGCN), fusion heads, AMFI-Net."""

from amfi_jax.models.agcn import AGCN
from amfi_jax.models.amfi import AMFINet, build_model
from amfi_jax.models.fusion import AMFIHead, SimpleFusionHead, gate_loss
from amfi_jax.models.outputs import ModelOutput
from amfi_jax.models.resnet3d import ResNet3D

__all__ = ["AGCN", "AMFIHead", "AMFINet", "ModelOutput", "ResNet3D", "SimpleFusionHead",
           "build_model", "gate_loss"]
