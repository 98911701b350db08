"""Dataset readers, transforms, DataModules, superpixels, volumes and the embedded sample.

Importing the package registers every dataset layout, including those defined outside
``datasets/layouts.py`` (JSRT, noisy-label views), so any config can name them.
"""

from datasets import jsrt as _jsrt  # noqa: F401  (registers jsrt, jsrt_lungs, jsrt_heart, jsrt_clavicles)
from datasets.noise import layout as _noise_layout  # noqa: F401  (registers the 'noisy' layout)
