"""Dataset readers, transforms, DataModules, superpixels, volumes and the embedded sample."""
