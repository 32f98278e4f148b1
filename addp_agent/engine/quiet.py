"""Library notices that say nothing a user can act on, filtered before the engine imports diffusers.

transformers announces, on import, that it falls back to its PIL image processors because torchvision is absent;
diffusers' IP-Adapter loader (a mixin of the pipeline, as of the stock InstructPix2Pix one) imports CLIP's and SigLIP's
image processors, so every command would print two such lines. Only that notice is dropped.
"""

from __future__ import annotations

import logging


class TorchvisionFallbackNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(TorchvisionFallbackNotice())
