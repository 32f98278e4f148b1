"""Benchmarks: the stock InstructPix2Pix pipeline / a straightforward loop against the ADDP engine, in one run."""
