"""Pure-PyTorch float64 reference of every op: readable, slow, the oracle of the tests.

One module per op (philox_fill, gmm_shapes, bias_field, appearance); `backend` gathers the
four op functions for the backend registry.
"""
