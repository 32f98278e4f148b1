"""`addp demo`: a Gradio web page for segmentation, corrections and depth over the project's own models.

Modules: ``service`` (the shared models, images and critics behind every handler), ``views`` (pictures and text
for results), ``segment`` / ``correct`` / ``depth`` (the three tabs' handlers), ``examples`` (generated example
scenes), ``app`` (the page layout and the server). Gradio's usage analytics are switched off before gradio is
imported anywhere in this package: the page makes no request off this machine.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
