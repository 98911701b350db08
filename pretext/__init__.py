"""Self-supervised pretext tasks: superpixel-inpainting MIM (autoSMIM) and its rotation, colorization
and jigsaw probes (plain operations in :mod:`pretext.ops`, thin LightningModules around them)."""
