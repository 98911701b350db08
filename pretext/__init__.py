"""Self-supervised pretext tasks: autoSMIM superpixel-inpainting MIM and its probes.

Rotation, colorization and jigsaw probes; plain operations in :mod:`pretext.ops`, thin
LightningModules around them.
"""
