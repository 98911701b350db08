"""Segmentation networks; importing this package registers every network with ``models.registry``."""

from models.networks import ducknet, encoder_unet, resunet, resunetpp, unet, unetpp

__all__ = ["ducknet", "encoder_unet", "resunet", "resunetpp", "unet", "unetpp"]
