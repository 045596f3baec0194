"""Benchmarks and fidelity yardsticks for rasd_kernels.

literal: the published RaSD generator written out literally in plain PyTorch (full-resolution
fields, grid_sample, full-resolution bias blur), to compare distributions and speed against.
"""
